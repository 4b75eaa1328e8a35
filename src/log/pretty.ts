/**
 * Formats pino JSON lines for a person at a terminal: time, level, who wrote it, the message, then the
 * remaining fields as key=value. The JSON lines themselves are kept unchanged in logs.jsonl.
 */

const levelLabels: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields shown in the line prefix or not worth repeating on every terminal line. */
const hiddenFields = new Set(['level', 'time', 'msg', 'pid', 'run', 'node', 'rank', 'role', 'hostname', 'v']);

/** Returns the terminal form of one JSON log line, or the line itself when it is not JSON. */
export function formatLogLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }

  const time = typeof record.time === 'number' ? new Date(record.time).toISOString().slice(11, 23) : '--:--:--.---';
  const level = levelLabels[record.level as number] ?? String(record.level);
  const source = describeSource(record);
  const message = typeof record.msg === 'string' ? record.msg : '';

  const extras: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (hiddenFields.has(key)) continue;
    // Once a worker has a rank, the prefix shows it and the local rank is noise.
    if (key === 'localRank' && typeof record.rank === 'number') continue;
    extras.push(`${key}=${formatValue(value)}`);
  }
  return `${time} ${level} [${source}] ${message}${extras.length > 0 ? ' ' + extras.join(' ') : ''}`;
}

function describeSource(record: Record<string, unknown>): string {
  const role = typeof record.role === 'string' ? record.role : 'process';
  const node = typeof record.node === 'number' ? `node ${record.node} ` : '';
  if (role === 'worker') {
    const rank = typeof record.rank === 'number' ? `rank ${record.rank}` : `local ${String(record.localRank ?? '?')}`;
    return `${node}${rank}`;
  }
  return `${node}${role}`;
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return /\s/.test(value) ? JSON.stringify(value) : value;
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  if (value !== null && typeof value === 'object' && 'message' in value && 'stack' in value) {
    // pino's error serializer: the stack already starts with the message and is what a person needs.
    return '\n' + String((value as { stack: unknown }).stack);
  }
  return JSON.stringify(value);
}
