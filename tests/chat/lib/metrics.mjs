// Scrapes /metrics and parses the Prometheus text format into samples.
import assert from 'node:assert/strict';
import { get } from '../../blackbox/lib/http.mjs';

// Parses `name{a="b",c="d"} value [timestamp]` lines; returns {samples, types, text}.
export function parseMetrics(text) {
  const samples = [];
  const types = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# TYPE (\S+) (\S+)/.exec(line);
      if (m) types[m[1]] = m[2];
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/.exec(line);
    assert.ok(m, `malformed metrics line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) {
      for (const lm of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types, text };
}

export async function scrape(server) {
  const res = await get(server.httpPort, '/metrics');
  assert.equal(res.status, 200, `/metrics answered ${res.status}`);
  const parsed = parseMetrics(res.text);
  parsed.contentType = res.headers['content-type'] ?? '';
  return parsed;
}

// Samples of metric `name` whose labels include `labels`.
export function select(m, name, labels = {}) {
  return m.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

// Sum of the matching samples (0 when there are none).
export function sum(m, name, labels = {}) {
  return select(m, name, labels).reduce((a, s) => a + s.value, 0);
}

export function has(m, name) {
  return m.samples.some((s) => s.name === name);
}
