import type { PeerAddress } from '../comm/protocol.js';

/** Default coordinator port when a scheduler names the host but not the port, as torchrun's default. */
export const DEFAULT_COORDINATOR_PORT = 29400;

/** Multi-node settings found in the environment; each is undefined when no variable set it. */
export interface SchedulerSettings {
  nodeCount?: number;
  nodeRank?: number;
  coordinator?: PeerAddress;
  /** The variables that were used, for the launch log. */
  sources: string[];
}

/**
 * Reads multi-node settings that schedulers and torchrun-style job scripts put in the environment, so existing
 * job scripts carry over. For each setting the first of these wins; command-line flags override them all:
 *   torchrun style: NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT
 *   Slurm:          SLURM_NNODES, SLURM_NODEID, and the first host of SLURM_JOB_NODELIST as the coordinator
 *   Kubernetes:     JOB_COMPLETION_INDEX of an indexed Job as the node rank
 */
export function readSchedulerEnvironment(variables: NodeJS.ProcessEnv): SchedulerSettings {
  const settings: SchedulerSettings = { sources: [] };
  const integer = (name: string): number | undefined => {
    const text = variables[name];
    if (text === undefined || text === '') return undefined;
    if (!/^\d+$/.test(text)) throw new Error(`environment variable ${name} must be a non-negative integer (got '${text}')`);
    settings.sources.push(name);
    return Number(text);
  };

  settings.nodeCount = integer('NNODES') ?? integer('SLURM_NNODES');
  settings.nodeRank = integer('NODE_RANK') ?? integer('SLURM_NODEID') ?? integer('JOB_COMPLETION_INDEX');

  const port = integer('MASTER_PORT') ?? DEFAULT_COORDINATOR_PORT;
  const masterAddress = variables.MASTER_ADDR;
  if (masterAddress !== undefined && masterAddress !== '') {
    settings.coordinator = { host: masterAddress, port };
    settings.sources.push('MASTER_ADDR');
  } else if (variables.SLURM_JOB_NODELIST !== undefined && variables.SLURM_JOB_NODELIST !== '') {
    settings.coordinator = { host: firstSlurmHost(variables.SLURM_JOB_NODELIST), port };
    settings.sources.push('SLURM_JOB_NODELIST');
  }
  return settings;
}

/**
 * Returns the first host of a Slurm node list in its compressed form, e.g. `gpu[03-05,09],cpu1` gives
 * `gpu03` and `a1,b2` gives `a1`.
 */
export function firstSlurmHost(nodeList: string): string {
  const bracket = nodeList.indexOf('[');
  const comma = nodeList.indexOf(',');
  if (bracket < 0 || (comma >= 0 && comma < bracket)) {
    return comma < 0 ? nodeList : nodeList.slice(0, comma);
  }
  const prefix = nodeList.slice(0, bracket);
  const first = /^[^,\-\]]+/.exec(nodeList.slice(bracket + 1))?.[0] ?? '';
  return prefix + first;
}
