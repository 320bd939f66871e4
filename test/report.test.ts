/**
 * `kvm-trace report`: one model, three renderings that agree on every count; bad input is one line with
 * file:line and a non-zero exit; the HTML page renders in headless Chromium without errors and draws one
 * rect per kvm_run line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PassThrough } from 'node:stream';
import { sampleTrace, toJsonl } from './report-fixtures.js';
import { buildReportModel, buildReportModelFromFile, reportCounts, type ReportModel } from '../src/report/model.js';
import { renderHtml, renderJson, renderText } from '../src/report/index.js';
import { kernelTypeSource } from '../src/btf/type-source.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { buildProgram } from '../src/cli/program.js';
import { CliError } from '../src/cli/errors.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { types, error: btfError } = kernelTypeSource();
let dir: string;
let sample: string;
let model: ReportModel;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kvm-trace-report-'));
  sample = join(dir, 'sample.jsonl');
  writeFileSync(sample, toJsonl(sampleTrace()));
  model = await buildReportModelFromFile(sample, { types, typesError: btfError, lookup: ioctlByName, lineSize: 64 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('report model', () => {
  it('counts calls, errors, exits, fds and lost records from the records', () => {
    const c = reportCounts(model);
    expect(c['ioctl.KVM_RUN.calls']).toBe(400);
    expect(c['vcpu.4242/0.exits.IO']).toBe(180);
    expect(c['vcpu.4242/1.exits.HLT']).toBe(1);
    expect(c['total.exits']).toBe(400);
    expect(c['ioctl.KVM_SET_REGS.errors']).toBe(1);
    expect(c['fds.opened']).toBe(4);
    expect(c['fds.leaked']).toBe(1);
    expect(c['lost']).toBe(3);
    expect(model.ioctls.find((i) => i.name === 'KVM_GET_SUPPORTED_CPUID')!.errnos).toEqual({ E2BIG: 1 });
    expect(model.capture.strategy).toBe('tracepoint');
    expect(model.vcpus[0]).toMatchObject({ pid: 4242, vcpu: 0, kernel_addr: '0xffff88812a3c0000', mmap_size: 12288 });
  });

  it.skipIf(!types)('derives buffer flags with the kernel BTF when the records carry none', () => {
    const regs = model.ioctls.find((i) => i.name === 'KVM_SET_REGS')!;
    // two vCPUs × (aligned + misaligned at +4): 4 copies of 144 bytes, 2 misaligned, none crossing
    expect([regs.copies, regs.bytes_copied, regs.misaligned, regs.cacheline_cross]).toEqual([4, 576, 2, 0]);
    const get = model.ioctls.find((i) => i.name === 'KVM_GET_REGS')!;
    expect([get.copies, get.misaligned, get.cacheline_cross]).toEqual([2, 0, 2]);
    expect(get.worst[0]).toMatchObject({ addr: '0x7f4410000238', lines: 4, min_lines: 3, tid: 4243, pid: 4242 });
    const dirty = model.ioctls.find((i) => i.name === 'KVM_GET_DIRTY_LOG')!;
    // slot 0 is 2 MiB = 512 pages → 64-byte bitmap at an address 4 bytes off
    expect(dirty.worst[0]).toMatchObject({ what: 'kvm_dirty_log.dirty_bitmap', len: 64, misaligned: true, cacheline_cross: true });
    expect(model.flags_from).toBe('derived');
    expect(model.kvm_run).toMatchObject({ size: 2352, rows: 37 });
    expect(model.kvm_run!.reasons.IO.lines).toEqual([0, 64]);
    expect(model.vcpus[1].lines.IO).toMatchObject({ lines: [0, 64], user_lines: ['0x7f441233000', '0x7f441234000'] });
  });

  it.skipIf(!types)('per ioctl, copies observed by a hook and derived for the rest; per hook, attached or not and why', () => {
    const byName = (n: string) => model.ioctls.find((i) => i.name === n)!;
    // KVM_SET_REGS: the aligned call per vCPU was seen by memdup_user, the +4 one was not (derived).
    expect([byName('KVM_SET_REGS').observed_copies, byName('KVM_SET_REGS').derived_copies]).toEqual([2, 2]);
    // KVM_SET_MSRS: entries observed (memdup_user); the header goes through copy_from_user: derived.
    expect([byName('KVM_SET_MSRS').observed_copies, byName('KVM_SET_MSRS').derived_copies]).toEqual([2, 2]);
    expect(byName('KVM_GET_REGS')).toMatchObject({ observed_copies: 0, derived_copies: 2 });
    expect(model.totals.observed_copies).toBe(4);
    expect(model.hooks).toMatchObject({ memdup_user: { attached: true }, _copy_from_user: { attached: false, reason: 'fentry: EBUSY; kprobe: EINVAL' } });
    const text = renderText(model);
    expect(text).toContain('copy hooks: memdup_user, vmemdup_user attached');
    expect(text).toContain('  _copy_to_user: not attached (fentry: EBUSY; kprobe: EINVAL)');
    expect(text).toMatch(/^  KVM_SET_MSRS\s+2\s+2\s+0$/m);
    const html = renderHtml(model);
    expect(html).toContain('<section id="copy-sources">');
    expect(html).toMatch(/<code>_copy_from_user<\/code><\/td><td class="l"><b>not attached<\/b><\/td><td class="l mono">fentry: EBUSY; kprobe: EINVAL/);
    expect(JSON.parse(renderJson(model)).hooks.vmemdup_user).toEqual({ attached: true, program: 'kt_vmemdup_user_fentry', reason: 'fentry' });
  });

  it('uses the flags the capture attached when records carry them', () => {
    const recs = sampleTrace({ runs: 3 }).map((r) =>
      r.type === 'ioctl' && r.name === 'KVM_SET_REGS'
        ? { ...r, flags: [{ what: 'arg', dir: 'from_user' as const, addr: r.arg, len: 144, align: 8, misaligned: true, cacheline_cross: true, lines: 4, min_lines: 3, source: 'observed' as const }] }
        : r,
    );
    const m = buildReportModel(recs, {});
    const regs = m.ioctls.find((i) => i.name === 'KVM_SET_REGS')!;
    expect([regs.copies, regs.misaligned, regs.cacheline_cross]).toEqual([5, 5, 5]);
    expect(m.totals.observed_copies).toBe(5);
    expect(m.flags_from).toBe('records');
    expect(m.kvm_run).toBeNull();
    expect(m.notes.join(' ')).toMatch(/BTF not available/);
  });
});

/** Counts as the text rendering shows them. */
function countsFromText(text: string): Record<string, number> {
  const c: Record<string, number> = {};
  const num = (re: RegExp, key: string) => {
    const m = text.match(re);
    if (m) c[key] = Number(m[1]);
  };
  num(/records (\d+) \(lines/, 'records');
  num(/   lost (\d+)/, 'lost');
  num(/KVM_RUN exits (\d+)/, 'total.exits');
  num(/fds opened (\d+)/, 'fds.opened');
  num(/ closed (\d+)/, 'fds.closed');
  num(/ leaked (\d+)/, 'fds.leaked');
  num(/ observed (\d+)/, 'total.observed_copies');
  num(/ derived (\d+)/, 'total.derived_copies');
  const cols = ['calls', 'errors', 'copies', 'bytes_copied', 'misaligned', 'cacheline_cross', 'unknown_copies'];
  for (const line of text.split('\n')) {
    const row = line.match(/^(KVM_\w+|total)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/);
    if (row) cols.forEach((k, i) => (c[row[1] === 'total' ? `total.${k}` : `ioctl.${row[1]}.${k}`] = Number(row[i + 2])));
  }
  let inSources = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('copies per ioctl, by source:')) inSources = true;
    else if (!line.startsWith('  ')) inSources = false;
    const row = inSources && line.match(/^  (KVM_\w+)\s+(\d+)\s+(\d+)\s+(\d+)$/);
    if (row) {
      c[`ioctl.${row[1]}.observed_copies`] = Number(row[2]);
      c[`ioctl.${row[1]}.derived_copies`] = Number(row[3]);
    }
  }
  let vcpu = '';
  for (const line of text.split('\n')) {
    const v = line.match(/^  pid (\d+) vcpu (\d+): .* KVM_RUN calls (\d+)/);
    if (v) {
      vcpu = `${v[1]}/${v[2]}`;
      c[`vcpu.${vcpu}.runs`] = Number(v[3]);
    }
    const e = line.match(/^    exits: (.*)$/);
    if (e) for (const part of e[1].split(', ')) {
      const [r, n] = part.split(' ');
      c[`vcpu.${vcpu}.exits.${r}`] = Number(n);
    }
  }
  // The exit table and the VMM handling time: columns two or more spaces apart.
  let section = '';
  let handling = '';
  for (const line of text.split('\n')) {
    if (/^\S/.test(line)) section = line.startsWith('KVM_RUN returns') ? 'exits' : line.startsWith('VMM handling') ? 'handling' : line.startsWith('Hardware exits') ? 'hw' : '';
    const cells = line.trim().split(/\s{2,}/);
    if (section === 'exits' && /^  \S/.test(line) && /^\d+$/.test(cells[1] ?? '') && cells[0] !== 'total') c[`exit.${cells[0]}.samples`] = Number(cells[1]);
    if (section === 'hw' && /^  \S/.test(line) && /^\d+$/.test(cells[2] ?? '') && cells[0] !== 'total') c[`hw.${cells[0]}.${cells[1]}.samples`] = Number(cells[2]);
    const h = line.match(/^  pid (\d+) vm (\S+) vcpu (\S+) fd (\d+) .*: re-entries (\d+)  pending (\d+)$/);
    if (section === 'handling' && h) {
      handling = `handling.${h[1]}/${h[2]}/${h[3]}/${h[4]}`;
      c[`${handling}.pending`] = Number(h[6]);
    } else if (section === 'handling' && /^    \S/.test(line) && /^\d+$/.test(cells[1] ?? '')) {
      c[cells[0] === 'all' ? `${handling}.re_entries` : `${handling}.exit.${cells[0]}`] = Number(cells[1]);
    }
  }
  return c;
}

/** Counts as the HTML shows them: every data-count element, its text checked against its value. */
function countsFromHtml(html: string): Record<string, number> {
  const c: Record<string, number> = {};
  for (const m of html.matchAll(/data-count="([^"]+)" data-value="(\d+)">([\d,]+)</g)) {
    const key = m[1].replace(/&#39;/g, "'").replace(/&amp;/g, '&');
    const shown = Number(m[3].replace(/,/g, ''));
    expect(shown, `${key}: shown ${m[3]} vs value ${m[2]}`).toBe(Number(m[2]));
    if (key in c) expect(c[key], `${key} shown twice with different values`).toBe(shown);
    c[key] = shown;
  }
  return c;
}

describe('the three formats agree on every count', () => {
  it('text, json and html show the model\'s counts', () => {
    const want = reportCounts(model);
    expect(Object.keys(want).length).toBeGreaterThan(60);
    expect(reportCounts(JSON.parse(renderJson(model)))).toEqual(want);
    expect(countsFromText(renderText(model))).toEqual(want);
    expect(countsFromHtml(renderHtml(model))).toEqual(want);
  });

  it('the agreement check itself notices a wrong count', () => {
    const broken = structuredClone(model);
    broken.ioctls[0].calls += 1;
    expect(countsFromText(renderText(broken))).not.toEqual(reportCounts(model));
    expect(countsFromHtml(renderHtml(broken))).not.toEqual(reportCounts(model));
  });
});

async function runCli(args: string[]): Promise<{ out: string; err: string; error?: unknown }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const program = await buildProgram({ stdout, stderr });
  try {
    await program.parseAsync(['node', 'kvm-trace', ...args]);
    return { out, err };
  } catch (error) {
    return { out, err, error };
  }
}

describe('bad input', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['garbage', '{"type":"lost","count":1}\nthis is not json\n{"type":"lost","count":1}\n', /garbage\.jsonl:2: not JSON/],
    ['truncated', '{"type":"lost","count":1}\n{"type":"ioctl","name":"KVM_RU', /truncated\.jsonl:2: truncated record/],
    ['empty', '', /empty\.jsonl:1: empty file/],
    ['array', '[1,2,3]\n', /array\.jsonl:1: not a kvm-trace record/],
    ['blank', '\n\n\n', /blank\.jsonl:3: no records in 3 lines/],
    ['missing-field', '{"type":"ioctl","pid":1}\n', /missing-field\.jsonl:1: ioctl record without "name"/],
  ];

  it.each(cases)('%s input → CliError input naming file:line', async (name, body, re) => {
    const f = join(dir, `${name}.jsonl`);
    writeFileSync(f, body);
    const r = await runCli(['report', f]);
    expect(r.error).toBeInstanceOf(CliError);
    expect((r.error as CliError).code).toBe('input');
    expect((r.error as CliError).exitCode).toBe(1);
    expect((r.error as Error).message).toMatch(re);
    expect((r.error as Error).message).not.toContain('\n');
  });

  it('a missing file and a bad --format are one-line errors too', async () => {
    expect(((await runCli(['report', join(dir, 'nope.jsonl')])).error as Error).message).toMatch(/nope\.jsonl: cannot read: ENOENT/);
    const bad = await runCli(['report', sample, '--format', 'pdf']);
    expect((bad.error as CliError).code).toBe('usage');
  });

  const bin = join(root, 'dist/src/cli/main.js');
  const built = existsSync(join(root, 'dist/src/cli/commands/report.js'));
  it.skipIf(!built)('the binary prints one line on stderr and exits 1 (needs `npx tsc -p .`)', () => {
    const f = join(dir, 'truncated.jsonl');
    writeFileSync(f, '{"type":"lost","count":1}\n{"type":"io');
    const r = spawnSync(process.execPath, [bin, 'report', f], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([`kvm-trace: ${f}:2: truncated record: the last line has no trailing newline and is not complete JSON`]);
  });
  if (!built) console.log('skipping the spawned-binary check: dist/ not built (run `npx tsc -p .` or `npm test`)');
});

describe('CLI output', () => {
  it.each(['text', 'json', 'html'])('--format %s to stdout and with -o', async (format) => {
    const r = await runCli(['report', sample, '--format', format, '--cacheline', '64']);
    expect(r.error).toBeUndefined();
    const outFile = join(dir, `out.${format}`);
    const w = await runCli(['report', sample, '--format', format, '-o', outFile, '--cacheline', '64']);
    expect(w.error).toBeUndefined();
    expect(w.out).toBe('');
    expect(readFileSync(outFile, 'utf8')).toBe(r.out);
    if (format === 'json') expect(reportCounts(JSON.parse(r.out))).toEqual(reportCounts(model));
  });
});

function findChromium(): string | undefined {
  for (const c of ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) if (existsSync(c)) return c;
  return undefined;
}

describe('HTML in headless Chromium', () => {
  const chromium = findChromium();
  if (!chromium) console.log('skipping the browser test: chromium not installed (node scripts/bootstrap.mjs --test installs it)');
  const flags = (profile: string) => ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`];

  it('is self-contained: no URL is loaded from anywhere', () => {
    const html = renderHtml(model);
    expect(html).not.toMatch(/\b(src|href)\s*=\s*["']?(https?:|\/\/)/i);
    expect(html).not.toMatch(/@import|url\(/i);
  });

  it.skipIf(!chromium)('renders without script errors and draws a rect per kvm_run line', () => {
    const page = join(dir, 'report.html');
    writeFileSync(page, renderHtml(model));
    const profile = mkdtempSync(join(tmpdir(), 'kvm-trace-chromium-'));
    try {
      const r = spawnSync(chromium!, [...flags(profile), '--virtual-time-budget=2000', '--dump-dom', `file://${page}#reason=IO`], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr.slice(-500)).toBe(0);
      const dom = r.stdout;
      expect(dom).toMatch(/<body[^>]*data-render-ok="1"/);
      expect(dom).toMatch(/<body[^>]*data-errors="0"/);
      // The map: one line-row rect per line of struct kvm_run (plus the PIO data page line 64).
      const rows = [...dom.matchAll(/<rect class="line-row[^"]*" data-line="(\d+)"/g)].map((m) => Number(m[1]));
      const k = model.kvm_run!;
      for (let i = 0; i < k.rows; i++) expect(rows).toContain(i);
      expect(rows).toContain(64);
      // The script selected the reason from the URL; IO's fields are drawn.
      expect(dom).toMatch(/<svg id="kvmrun" data-sel="IO"/);
      expect([...dom.matchAll(/<rect class="fld r-IO[^"]*"/g)].length).toBeGreaterThanOrEqual(12);
      const shot = join(dir, 'report.png');
      const s = spawnSync(chromium!, [...flags(profile), '--hide-scrollbars', '--window-size=1280,1600', `--screenshot=${shot}`, `file://${page}`], { encoding: 'utf8', timeout: 60_000 });
      expect(s.status, s.stderr.slice(-500)).toBe(0);
      expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
      expect(statSync(shot).size).toBeGreaterThan(50_000);
    } finally {
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
