// consultctl's option values: checked by the fields' schemas, durations with their unit only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BadValue, checkValues, durationMs } from '../../../src/ops/cli-values.js';

const refused = (opt: Record<string, string | boolean | undefined>, positionals: string[] = ['shops']): string => {
  try {
    checkValues(opt, positionals);
  } catch (e) {
    assert.instance(e, BadValue);
    return (e as Error).message;
  }
  assert.unreachable(`accepted: ${JSON.stringify(opt)} ${positionals.join(' ')}`);
  return '';
};

test('durations take their unit; a bare number or a word is refused', () => {
  assert.equal(['2500ms', '3s', '1.5 s', '1min', '2 SEC'].map(durationMs), [2500, 3000, 1500, 60_000, 2000]);
  assert.equal(['3000', 'abc', '3h', '', '-1s'].map(durationMs), [undefined, undefined, undefined, undefined, undefined]);
  const opt: Record<string, string> = { timeout: '3s' };
  checkValues(opt, ['bot', 's@d', 'bot-first']);
  assert.is(opt.timeout, '3000', 'given to the API in ms');
  assert.is(refused({ timeout: '3000' }), '--timeout must be a duration from 100ms to 60s with its unit (e.g. 3000ms; units: ms, s, min)');
  assert.match(refused({ timeout: 'abc' }), /^--timeout must be a duration from 100ms to 60s/);
  assert.match(refused({ timeout: '2min' }), /^--timeout must be a duration from 100ms to 60s/, 'out of range');
});

test('numbers, true|false and choices are checked by the field they set, naming the flag', () => {
  assert.is(refused({ max: 'abc' }), '--max must be an integer in 1..1000');
  assert.is(refused({ max: '0' }), '--max must be an integer in 1..1000');
  assert.is(refused({ max: '2.5' }), '--max must be an integer in 1..1000');
  assert.is(refused({ retries: '9' }), '--retries must be an integer in 0..5');
  assert.is(refused({ limit: '0' }), '--limit must be a positive integer');
  assert.is(refused({ queue: 'yes' }), '--queue must be true or false');
  assert.is(refused({ default: '1' }), '--default must be true or false');
  assert.is(refused({ strategy: 'fastest' }), '--strategy must be one of sticky, least-busy, round-robin, random');
  assert.is(refused({ bot: 'always' }), '--bot must be one of none, bot-first, human-first');
  assert.is(refused({ 'bot-url': 'ftp://x' }), '--bot-url must be an http:// or https:// URL');
  assert.is(refused({ format: 'xml' }), '--format must be json or csv');
  assert.match(refused({ from: 'yesterday' }), /^--from must be ms since the epoch or an ISO 8601 date/);
  assert.is(refused({ shop: 'not a jid' }), '--shop must be a bare JID (user@domain)');
  assert.is(refused({}, ['agent', 'status', 'a@d', 'busy']), 'status must be one of standard, dnd, always-on');
  assert.is(refused({}, ['bot', 's@d', 'sometimes']), 'bot mode must be one of none, bot-first, human-first');
});

test('good values pass as they are', () => {
  const opt: Record<string, string | boolean> = {
    max: '7',
    retries: '0',
    limit: '50',
    queue: 'false',
    strategy: 'sticky',
    from: '2026-01-31',
    to: '1700000000000',
    format: 'csv',
    'dry-run': true,
  };
  const given = structuredClone(opt);
  checkValues(opt, ['agent', 'status', 'a@d', 'dnd']);
  assert.equal(opt, given);
});

test.run();
