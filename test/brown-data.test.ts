import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import test from 'ava';

import { listCorpusFiles, parseBrownText, readCorpus, splitCorpus, splitLongSentence } from '../src/data/brown-corpus.js';
import { encodeSentences, makeTaggerBatch, sentenceLengths } from '../src/data/brown-dataset.js';
import { mapBrownTag } from '../src/data/brown-tags.js';
import { buildTagList, Vocabulary } from '../src/data/vocabulary.js';
import { SHAPE_COUNT, shapeId, suffixBuckets } from '../src/data/word-features.js';
import { hasCode } from '../src/errors.js';

/** The hand-written corpus: ca01, ca02, cb01, cb02 and a README that is not a corpus file. */
const fixture = fileURLToPath(new URL('../../test/fixtures/brown-mini', import.meta.url));

const tagCases: Array<[string, string]> = [
  ['np-tl', 'np'],
  ['fw-nn', 'nn'],
  ['nn-hl', 'nn'],
  ['fw-in-tl', 'in'],
  ['fw-nn-tl-nc', 'nn'],
  ['nns$-tl-hl', 'nns$'],
  ['ppss+md', 'ppss'],
  ['fw-ppss+hv', 'ppss'],
  ['pps+bez-hl', 'pps'],
  ['md*', 'md'],
  ['doz*-tl', 'doz'],
  ['*', '*'],
  ['*-hl', '*'],
  ['--', '--'],
  ['.-hl', '.'],
  ['NP-TL', 'np'],
];

test('mapBrownTag strips context marks', (t) => {
  for (const [raw, expected] of tagCases) {
    t.is(mapBrownTag(raw), expected, `tag ${raw}`);
  }
});

test('mapBrownTag rejects empty base tag', (t) => {
  for (const raw of ['fw-', '-tl', 'fw--hl']) {
    const error = t.throws(() => mapBrownTag(raw), undefined, `tag ${raw}`);
    t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), `code for ${raw}`);
    t.true(error?.message.includes(`"${raw}"`), `message names ${raw}`);
  }
});

test('parseBrownText splits at last slash', (t) => {
  const sentences = parseBrownText('\n\n\tDe/fw-in-tl Gaulle/np-tl won/vbd 1/2/cd ./.\n\n', 'inline');
  t.is(sentences.length, 1);
  t.deepEqual(sentences[0].words, ['De', 'Gaulle', 'won', '1/2', '.']);
  t.deepEqual(sentences[0].tags, ['in', 'np', 'vbd', 'cd', '.']);
});

test('parseBrownText rejects token without tag', (t) => {
  const error = t.throws(() => parseBrownText('The/at jury said/vbd\n', 'broken-file'));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'));
  t.regex(error?.message ?? '', /broken-file:1: token "jury"/);
});

test('listCorpusFiles sorts and skips README', (t) => {
  const names = listCorpusFiles(fixture).map((path) => path.slice(fixture.length + 1));
  t.deepEqual(names, ['ca01', 'ca02', 'cb01', 'cb02']);
});

test('listCorpusFiles rejects folder without corpus', (t) => {
  const error = t.throws(() => listCorpusFiles(fileURLToPath(new URL('.', import.meta.url))));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'));
});

test('splitCorpus holds out every second file', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  t.deepEqual(splits.trainFiles, ['ca01', 'cb01']);
  t.deepEqual(splits.evalFiles, ['ca02', 'cb02']);
  // ca01 has 3 sentences and cb01 has 3; ca02 has 2 and cb02 has 1.
  t.is(splits.train.length, 6);
  t.is(splits.eval.length, 3);
  t.deepEqual(splits.eval[2].words, ["It's", 'over', ',', 'said', 'the', 'jury', '.']);
});

test('readCorpus honours limitFiles', (t) => {
  const files = readCorpus(fixture, 2);
  t.deepEqual(
    files.map((file) => file.name),
    ['ca01', 'ca02'],
  );
});

test('splitLongSentence makes balanced pieces', (t) => {
  const words = Array.from({ length: 10 }, (_, i) => `w${i}`);
  const tags = words.map(() => 'nn');
  const pieces = splitLongSentence({ words, tags }, 4);
  // 10 tokens need ceil(10 / 4) = 3 pieces; 10 = 4 + 3 + 3.
  t.deepEqual(
    pieces.map((piece) => piece.words.length),
    [4, 3, 3],
  );
  t.deepEqual(pieces.flatMap((piece) => piece.words), words);
  t.is(splitLongSentence({ words, tags }, 10).length, 1);
});

test('splitCorpus splits long fixture sentences', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 10);
  // Training sentence lengths 12, 8, 6 (ca01) and 15, 8, 18 (cb01); 12 -> 6 + 6, 15 -> 8 + 7, 18 -> 9 + 9.
  t.deepEqual(
    splits.train.map((sentence) => sentence.words.length),
    [6, 6, 8, 6, 8, 7, 8, 9, 9],
  );
});

test('Vocabulary orders ties by word', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const vocabulary = Vocabulary.build(splits.train, 2, 100);
  // Training counts: the 11, . 6, jury/said/was 4, and/fair 3, city/election/it/of 2; the rest occur once.
  t.deepEqual(vocabulary.words, [
    '<pad>', '<unk>', 'the', '.', 'jury', 'said', 'was', 'and', 'fair', 'city', 'election', 'it', 'of',
  ]);
  t.is(vocabulary.idOf('The'), 2);
  t.is(vocabulary.idOf('Rome'), 1);
});

test('Vocabulary respects maxVocabulary', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const vocabulary = Vocabulary.build(splits.train, 1, 6);
  t.deepEqual(vocabulary.words, ['<pad>', '<unk>', 'the', '.', 'jury', 'said']);
});

test('Vocabulary is equal in another process', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const inProcess = Vocabulary.build(splits.train, 1, 1000).words;
  const moduleUrl = new URL('../src/data/', import.meta.url).href;
  // A fresh process builds the vocabulary from the sentences in reverse order, so insertion order differs too.
  const script = `
    const corpus = await import('${moduleUrl}brown-corpus.js');
    const { Vocabulary } = await import('${moduleUrl}vocabulary.js');
    const splits = corpus.splitCorpus(corpus.readCorpus(${JSON.stringify(fixture)}, 0), 2, 64);
    console.log(JSON.stringify(Vocabulary.build([...splits.train].reverse(), 1, 1000).words));
  `;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  t.deepEqual(JSON.parse(output), inProcess);
});

test('buildTagList sorts tags of both splits', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const tags = buildTagList([...splits.train, ...splits.eval]);
  // md occurs only in the held-out file ca02 (can't/md*).
  t.deepEqual(tags, [
    '*', ',', '.', 'at', 'bedz', 'cc', 'cd', 'dod', 'dti', 'in', 'jj', 'md', 'nn', 'nns', 'np', 'pps', 'ppss',
    'rb', 'to', 'vb', 'vbd',
  ]);
});

test('shapeId separates spelling classes', (t) => {
  // 1 + 4 * case + 2 * digit + hyphen, case: 0 none, 1 lower, 2 capitalised, 3 all capitals, 4 mixed.
  // A single capital letter counts as capitalised, so B-52 is 1 + 8 + 2 + 1.
  const cases: Array<[string, number]> = [
    ['.', 1],
    ['1/2', 3],
    ['--', 2],
    ['jury', 5],
    ['well-known', 6],
    ['Fulton', 9],
    ['I', 9],
    ['Mayor-nominate', 10],
    ['NEWS', 13],
    ['B-52', 12],
    ['McDonald', 17],
  ];
  for (const [word, expected] of cases) {
    t.is(shapeId(word), expected, `word ${word}`);
  }
  t.true(cases.every(([word]) => shapeId(word) < SHAPE_COUNT));
});

test('suffixBuckets stays in range', (t) => {
  const buckets = suffixBuckets('Elections', 64);
  t.is(buckets.length, 3);
  t.true(buckets.every((bucket) => bucket >= 1 && bucket < 64));
  t.deepEqual(suffixBuckets('elections', 64), buckets);
});

test('makeTaggerBatch pads to longest sentence', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const vocabulary = Vocabulary.build(splits.train, 2, 100);
  const tags = buildTagList([...splits.train, ...splits.eval]);
  const encoded = encodeSentences(splits.train, vocabulary, tags, 64);
  t.deepEqual([...sentenceLengths(encoded)], [12, 8, 6, 15, 8, 18]);

  // Sentences 2 (6 tokens) and 1 (8 tokens): length 8, two padding positions in row 0.
  const batch = makeTaggerBatch(encoded, [2, 1]);
  t.is(batch.size, 2);
  t.is(batch.length, 8);
  t.is(batch.tokenCount, 14);
  t.deepEqual([...batch.labels.subarray(6, 8)], [-1, -1]);
  t.deepEqual([...batch.wordIds.subarray(6, 8)], [0, 0]);
  t.deepEqual([...batch.suffixIds.subarray(6 * 3, 8 * 3)], [0, 0, 0, 0, 0, 0]);
  // "I'll/ppss+md go/vb": I'll is outside the vocabulary, go too; tags ppss and vb.
  t.deepEqual([...batch.wordIds.subarray(0, 2)], [1, 1]);
  t.deepEqual([...batch.labels.subarray(0, 2)], [tags.indexOf('ppss'), tags.indexOf('vb')]);
});

test('makeTaggerBatch rounds up length', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const vocabulary = Vocabulary.build(splits.train, 2, 100);
  const encoded = encodeSentences(splits.train, vocabulary, buildTagList(splits.train), 64);
  t.is(makeTaggerBatch(encoded, [2], 8).length, 8);
  t.is(makeTaggerBatch(encoded, [0], 8).length, 16);
});

test('makeTaggerBatch rejects bad index', (t) => {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const vocabulary = Vocabulary.build(splits.train, 2, 100);
  const encoded = encodeSentences(splits.train, vocabulary, buildTagList(splits.train), 64);
  const error = t.throws(() => makeTaggerBatch(encoded, [6]));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'));
  t.throws(() => makeTaggerBatch(encoded, []));
});
