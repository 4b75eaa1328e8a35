import { writeFile, rename, open } from 'node:fs/promises';
import type { ParameterSpec } from '../models/model.js';

/**
 * Writes float32 parameters in the safetensors format, which PyTorch and Hugging Face tools read: an 8-byte
 * little-endian header length, a JSON header mapping each tensor name to its dtype, shape and byte range, then
 * the raw little-endian tensor bytes. The file is written to a temporary name, synced, then renamed, so a reader
 * never sees a half-written file.
 */
export async function writeSafetensors(
  path: string,
  specs: readonly ParameterSpec[],
  parameters: Float32Array,
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const spec of specs) {
    const bytes = 4 * spec.shape.reduce((product, size) => product * size, 1);
    header[spec.name] = { dtype: 'F32', shape: spec.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  if (offset !== parameters.byteLength) {
    throw new Error(
      `safetensors: specs describe ${offset} bytes but the parameter buffer has ${parameters.byteLength}; ` +
        'pass the flat parameters laid out in specs order',
    );
  }

  // The format allows padding the header with spaces; aligning the data to 8 bytes helps memory-mapping readers.
  const headerJson = Buffer.from(JSON.stringify(header), 'utf8');
  const headerBytes = Buffer.concat([headerJson, Buffer.alloc((8 - (headerJson.length % 8)) % 8, ' ')]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));

  const temporaryPath = `${path}.tmp-${process.pid}`;
  await writeFile(temporaryPath, Buffer.concat([prefix, headerBytes, Buffer.from(parameters.buffer, parameters.byteOffset, parameters.byteLength)]));
  const handle = await open(temporaryPath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporaryPath, path);
}
