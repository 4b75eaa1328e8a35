/**
 * Records, statistics and the Markdown table of the all-reduce benchmark (bench/allreduce.ts).
 * Bandwidths are in MB/s, 10^6 bytes per second, as in the usual all-reduce benchmark convention.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';

/** One measured (implementation, world size, buffer size); the --json file is an array of these. */
export interface AllReduceRecord {
  /** "ringtrain", "ringtrain slice=256KiB", "gloo" or "tcp-ceiling". */
  implementation: string;
  world: number;
  bytes: number;
  /** Median over the timed calls of the slowest rank's time per call, in milliseconds. */
  medianMs: number;
  /** bytes / medianMs, in MB/s. */
  algbwMBps: number;
  /** algbw × 2(world − 1)/world, the rate at which each rank sends; for tcp-ceiling the stream rate. */
  busbwMBps: number;
  /** Number of timed calls behind the median. */
  calls: number;
  /** CPU time (user plus system) of all ranks together per call, in milliseconds; the median over rounds. */
  cpuMsPerCall: number | null;
}

/** Machine and run facts printed above the table. */
export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  node: string;
  date: string;
  loadAverage: string;
}

/** Returns the median of `values`, the mean of the two middle values for an even count. */
export function median(values: number[]): number {
  if (values.length === 0) {
    throw new RangeError('median of an empty list; run at least one iteration');
  }
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Builds the record of `implementation` from per-call times and per-round CPU times, in milliseconds. */
export function makeRecord(implementation: string, world: number, bytes: number, times: number[], cpuMs: number[]): AllReduceRecord {
  const medianMs = median(times);
  const algbwMBps = bytes / (medianMs / 1000) / 1e6;
  return {
    implementation,
    world,
    bytes,
    medianMs,
    algbwMBps,
    busbwMBps: (algbwMBps * 2 * (world - 1)) / world,
    calls: times.length,
    cpuMsPerCall: cpuMs.length > 0 ? median(cpuMs) : null,
  };
}

/** Formats a byte count with a binary unit: 1048576 -> "1 MiB". */
export function formatBytes(bytes: number): string {
  for (const [unit, scale] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= scale && bytes % scale === 0) {
      return `${bytes / scale} ${unit}`;
    }
  }
  return `${bytes} B`;
}

/** Returns the core count, the CPU model from /proc/cpuinfo, the Node version, the date and the load average. */
export function describeMachine(): MachineInfo {
  let cpuModel = 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    cpuModel = match?.[1].trim() ?? cpuModel;
  } catch {
    // /proc/cpuinfo exists only on Linux; the model then stays unknown.
  }
  return {
    nproc: availableParallelism(),
    cpuModel,
    node: process.version,
    date: new Date().toISOString(),
    loadAverage: formatLoad(),
  };
}

/** Returns the 1, 5 and 15 minute load averages as "1.02 0.98 0.75". */
export function formatLoad(): string {
  return loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
}

/**
 * Formats the records as a Markdown table, one row per (world, size, implementation). Each ringtrain row
 * shows its busbw divided by gloo's busbw for the same world and size, and by the TCP ceiling. The CPU
 * column is the CPU time of all ranks per call, which depends less on the machine's other load than time does.
 */
export function formatTable(records: AllReduceRecord[], tcpMBps: number | null): string[] {
  const lines = [
    '| world | size | implementation | median ms | algbw MB/s | busbw MB/s | busbw / gloo | busbw / TCP | CPU ms per call |',
    '| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const record of records) {
    const gloo = records.find((other) => other.implementation === 'gloo' && other.world === record.world && other.bytes === record.bytes);
    const isRing = record.implementation.startsWith('ringtrain');
    const versusGloo = isRing && gloo !== undefined ? (record.busbwMBps / gloo.busbwMBps).toFixed(2) : '';
    const versusTcp = tcpMBps !== null ? (record.busbwMBps / tcpMBps).toFixed(2) : '';
    lines.push(
      `| ${record.world} | ${formatBytes(record.bytes)} | ${record.implementation} | ${record.medianMs.toFixed(1)} | ` +
        `${record.algbwMBps.toFixed(0)} | ${record.busbwMBps.toFixed(0)} | ${versusGloo} | ${versusTcp} | ` +
        `${record.cpuMsPerCall === null ? '' : record.cpuMsPerCall.toFixed(1)} |`,
    );
  }
  if (tcpMBps !== null) {
    lines.push(`| 2 | stream | tcp-ceiling (one link, Node net) | | ${tcpMBps.toFixed(0)} | ${tcpMBps.toFixed(0)} | | 1.00 | |`);
  }
  return lines;
}
