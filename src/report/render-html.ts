/**
 * The report as one self-contained HTML page (inline CSS, SVG and a little JS; nothing fetched): summary
 * cards, a cache-line map of struct kvm_run (lines as rows, members as blocks, the fields each exit reason
 * touches highlighted, reason selectable), latency histograms per ioctl, buffer-flag counts, the worst
 * buffers, per-vCPU addresses and exits, and the capture's health.
 *
 * Everything is drawn server-side so the page reads without JS; the script only switches the selected exit
 * reason and sorts tables, then marks <body data-render-ok="1"> (and data-errors counts script errors) so
 * a headless browser test can tell the page rendered cleanly. Every count carries data-count="<key>" with
 * the key reportCounts() uses.
 */
import type { IoctlSummary, KvmRunMap, ReportModel } from './model-types.js';
import { fmtNs } from './render-text.js';
import { BUCKETS_PER_OCTAVE } from '../decode/histogram.js';
import { exitPathHtml } from './exit-path-section.js';
import { copySourcesHtml, flagBarsHtml } from './buffers-section.js';

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const num = (n: number): string => n.toLocaleString('en-US');
/** A count element the agreement test can read back: data-count holds the key, the text the exact value. */
const count = (key: string, n: number, cls = ''): string => `<span class="n ${cls}" data-count="${esc(key)}" data-value="${n}">${num(n)}</span>`;
const cssId = (s: string): string => s.replace(/[^A-Za-z0-9_-]/g, '_');

const CSS = `
:root{--ink:#1d2433;--mute:#667085;--line:#e4e7ec;--bg:#f7f8fa;--card:#fff;--acc:#2f6fed;--warn:#e8590c;--bad:#c2255c;--ok:#2b8a3e;--sel:#fff3bf}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#101828;color:#fff;padding:22px 32px}
header h1{margin:0;font-size:22px;font-weight:650;letter-spacing:.2px}
header .sub{color:#98a2b3;margin-top:4px;font-size:13px}
header code{color:#d0d5dd}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:18px 0}
h2{font-size:16px;margin:0 0 4px}
p.lede{color:var(--mute);margin:0 0 14px;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(104px,1fr));gap:12px;background:none;border:0;padding:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--mute);font-size:11px;white-space:nowrap;text-transform:uppercase;letter-spacing:.5px}
.card .n{font-size:22px;font-weight:650;display:block;margin-top:2px}
.card.warn .n{color:var(--warn)} .card.bad .n{color:var(--bad)} .card.good .n{color:var(--ok)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{color:var(--mute);font-weight:600;font-size:12px;cursor:pointer;user-select:none;position:sticky;top:0;background:var(--card)}
th:first-child,td:first-child{text-align:left}
td.l,th.l{text-align:left}
tbody tr:hover{background:#f9fafb}
td .n.hot{color:var(--bad);font-weight:600}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.pills{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 12px}
.pill{border:1px solid var(--line);background:#fff;border-radius:999px;padding:4px 12px;font:inherit;font-size:13px;cursor:pointer;color:var(--ink)}
.pill.on{background:var(--acc);border-color:var(--acc);color:#fff}
.pill small{opacity:.7;margin-left:4px}
.mapwrap{display:grid;grid-template-columns:auto 1fr;gap:20px;align-items:start}
.fields{font-size:12px}
.fields h3{font-size:13px;margin:0 0 6px}
.fields li{margin:2px 0;list-style:none}
.fields ul{padding:0;margin:0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
svg text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.line-row{fill:#f2f4f7}
.blk{fill:#fff;stroke:#d0d5dd;stroke-width:1}
.blk.union{fill:#f8f9fc}
.blk.sync{fill:#f4f5f7}
.blabel{font-size:10px;fill:#475467;pointer-events:none}
.rlabel{font-size:10.5px;fill:#667085}
.fld{display:none;fill:var(--acc);stroke:#1849a9;stroke-width:.8}
.fld.hdr{fill:#7a5af8;stroke:#5925dc}
.fld.data{fill:var(--ok);stroke:#237a35}
.fld.straddle{stroke:var(--bad);stroke-width:2.2}
.flabel{display:none;font-size:9.5px;fill:#fff;pointer-events:none}
.touch{display:none;fill:#f59f00}
.line-row.thin{fill:#eceef2}
.gap{font-size:11px;fill:#475467;font-style:italic;paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}
.tick{font-size:9.5px;fill:#98a2b3}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:14px}
.hist{border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.hist h4{margin:0 0 2px;font-size:12.5px}
.hist .meta{color:var(--mute);font-size:11.5px}
.bar{fill:var(--acc)}
.axis{stroke:#d0d5dd}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px}
.legend>span{font-size:12px;color:var(--mute);white-space:nowrap}
.note{color:var(--mute);font-size:12.5px;margin:4px 0}
.empty{color:var(--mute);font-style:italic}
  .scroll{overflow-x:auto}
footer{color:var(--mute);font-size:12px;text-align:center;margin-top:10px}
`;

function cards(m: ReportModel): string {
  const t = m.totals;
  const card = (label: string, key: string, n: number, cls = '') => `<div class="card ${cls}"><div class="k">${esc(label)}</div>${count(key, n)}</div>`;
  return `<section class="cards">
${card('ioctl calls', 'total.calls', t.calls)}
${card('errors', 'total.errors', t.errors, t.errors ? 'warn' : '')}
${card('KVM_RUN exits', 'total.exits', t.exits)}
${card('buffers copied', 'total.copies', t.copies)}
${card('bytes copied', 'total.bytes_copied', t.bytes_copied)}
${card('misaligned', 'total.misaligned', t.misaligned, t.misaligned ? 'bad' : 'good')}
${card('line-crossing', 'total.cacheline_cross', t.cacheline_cross, t.cacheline_cross ? 'bad' : 'good')}
${card('records lost', 'lost', m.lost, m.lost ? 'bad' : 'good')}
${card('fds leaked', 'fds.leaked', m.fds.leaked, m.fds.leaked ? 'warn' : 'good')}
</section>`;
}

const ROW_H = 20;
const ROW_GAP = 3;
const THIN_H = 4;
const BYTE_W = 10;
const LABEL_W = 116;

function runMap(k: KvmRunMap): string {
  const L = k.line_size;
  const bw = Math.max(4, Math.round((BYTE_W * 64) / L));
  const width = LABEL_W + L * bw + 8;
  const reasons = Object.keys(k.reasons);
  // Rows: every line of the struct, then the lines past its end an exit touched (PIO data page).
  const extra = [...new Set(reasons.flatMap((r) => k.reasons[r].lines.filter((l) => l >= k.rows)))].sort((a, b) => a - b);
  // A run of 3+ lines that only continue one member (sync regs `s`) and that no exit touches is drawn as
  // thin rows under one caption: every line keeps its rect, the map stays readable.
  const touchedAny = new Set(reasons.flatMap((r) => k.reasons[r].lines));
  const inner = (line: number): string | undefined => {
    const b = k.blocks.find((x) => x.offset < line * L && x.offset + x.size > (line + 1) * L);
    return b && !touchedAny.has(line) ? b.name : undefined;
  };
  const thin = new Set<number>();
  const captions: Array<{ from: number; to: number; name: string }> = [];
  for (let i = 0; i < k.rows; ) {
    const name = inner(i);
    let j = i;
    while (name && j + 1 < k.rows && inner(j + 1) === name) j++;
    if (name && j - i + 1 >= 3) {
      for (let x = i; x <= j; x++) thin.add(x);
      captions.push({ from: i, to: j, name });
    }
    i = j + 1;
  }
  const rows: Array<{ line: number; y: number; h: number }> = [];
  let y = 22;
  for (let i = 0; i < k.rows; i++) {
    const h = thin.has(i) ? THIN_H : ROW_H;
    rows.push({ line: i, y, h });
    y += h + (thin.has(i) && thin.has(i + 1) ? 1 : ROW_GAP);
  }
  let gapY = 0;
  if (extra.length) {
    gapY = y + 10;
    y += 24;
    for (const l of extra) {
      rows.push({ line: l, y, h: ROW_H });
      y += ROW_H + ROW_GAP;
    }
  }
  const height = y + 4;
  const rowY = new Map(rows.map((r) => [r.line, r.y]));
  const parts: string[] = [];
  for (let b = 0; b <= L; b += L / 8) {
    parts.push(`<text class="tick" x="${LABEL_W + b * bw}" y="12" text-anchor="middle">${b}</text>`);
  }
  for (const { line, y: ry, h } of rows) {
    const off = line * L;
    const touched = reasons.filter((r) => k.reasons[r].lines.includes(line));
    parts.push(`<g class="row" data-line="${line}">`);
    parts.push(`<rect class="line-row${h < ROW_H ? ' thin' : ''}" data-line="${line}" x="${LABEL_W}" y="${ry}" width="${L * bw}" height="${h}" rx="${h < ROW_H ? 1 : 3}"><title>line ${line}: bytes ${off}..${off + L - 1}</title></rect>`);
    if (h < ROW_H) {
      parts.push('</g>');
      continue;
    }
    parts.push(`<text class="rlabel${touched.length ? ' ' + touched.map((r) => `tl-${cssId(r)}`).join(' ') : ''}" x="0" y="${ry + 14}">line ${line}</text><text class="rlabel" x="${LABEL_W - 10}" y="${ry + 14}" text-anchor="end">+0x${off.toString(16).padStart(3, '0')}</text>`);
    if (line < k.rows) {
      for (const b of k.blocks) {
        const s = Math.max(b.offset, off);
        const e = Math.min(b.offset + b.size, off + L);
        if (e <= s) continue;
        const cls = b.name === 'exit union' ? 'blk union' : b.name === 's' ? 'blk sync' : 'blk';
        const x = LABEL_W + (s - off) * bw;
        const w = (e - s) * bw;
        const label = b.name === 's' ? 's (sync regs)' : b.name;
        parts.push(`<rect class="${cls}" x="${x}" y="${ry + 1}" width="${w}" height="${ROW_H - 2}" rx="2"><title>${esc(`${b.name} @${b.offset} (${b.size} B)`)}</title></rect>`);
        if (s === b.offset || (s === off && b.offset < off)) {
          const full = `${label}${s > b.offset ? ' …' : ''}`;
          const fit = Math.floor((w - 6) / 6.2);
          const text = full.length <= fit ? full : fit >= 5 ? `${full.slice(0, fit - 1)}…` : '';
          if (text) parts.push(`<text class="blabel" x="${x + 4}" y="${ry + 13.5}">${esc(text)}</text>`);
        }
      }
    } else {
      parts.push(`<text class="blabel" x="${LABEL_W + L * bw - 6}" y="${ry + 13.5}" text-anchor="end">PIO data page (outside struct kvm_run, same mapping)</text>`);
    }
    for (const r of touched) parts.push(`<rect class="touch t-${cssId(r)}" x="${LABEL_W - 7}" y="${ry}" width="4" height="${ROW_H}" rx="1.5"/>`);
    parts.push('</g>');
  }
  for (const c of captions) {
    const a = rowY.get(c.from)!;
    const b = rowY.get(c.to)! + THIN_H;
    const label = c.name === 's' ? 's (sync regs)' : c.name;
    parts.push(`<text class="rlabel" x="0" y="${(a + b) / 2 + 4}">lines ${c.from}–${c.to}</text><text class="gap" x="${LABEL_W + 8}" y="${(a + b) / 2 + 4}">${esc(label)} continues: ${c.to - c.from + 1} lines no exit touches</text>`);
  }
  if (extra.length) parts.push(`<text class="gap" x="${LABEL_W}" y="${gapY + 4}">⋯ past the end of struct kvm_run (${k.size} B): the PIO data page at kvm_run + io.data_offset ⋯</text>`);
  // Field overlays per reason, split at line boundaries.
  for (const r of reasons) {
    for (const f of k.reasons[r].fields) {
      for (let line = Math.floor(f.offset / L); line <= Math.floor((f.offset + f.size - 1) / L); line++) {
        const ry = rowY.get(line);
        if (ry === undefined) continue;
        const s = Math.max(f.offset, line * L);
        const e = Math.min(f.offset + f.size, (line + 1) * L);
        const x = LABEL_W + (s - line * L) * bw;
        const w = (e - s) * bw;
        const cls = `fld r-${cssId(r)}${f.part === 'header' ? ' hdr' : f.part === 'data' ? ' data' : ''}${f.straddles ? ' straddle' : ''}`;
        parts.push(`<rect class="${cls}" data-reason="${esc(r)}" x="${x + 0.5}" y="${ry + 2.5}" width="${Math.max(1, w - 1)}" height="${ROW_H - 5}" rx="2"><title>${esc(`${f.name} @${f.offset} (${f.size} B)${f.straddles ? ' — straddles a line boundary' : ''}`)}</title></rect>`);
        const short = f.name.replace(/^[a-z_0-9]+\./, '');
        if (w > short.length * 5.8 + 4) parts.push(`<text class="flabel r-${cssId(r)}" x="${x + 3}" y="${ry + 13.5}">${esc(short)}</text>`);
      }
    }
  }
  const rules = reasons
    .map((r) => `#kvmrun[data-sel="${esc(r)}"] .r-${cssId(r)},#kvmrun[data-sel="${esc(r)}"] .t-${cssId(r)}{display:inline} #kvmrun[data-sel="${esc(r)}"] .tl-${cssId(r)}{fill:#b35c00;font-weight:700}`)
    .join('\n');
  const exitsSeen = reasons.length;
  const pills = reasons.map((r, i) => `<button class="pill${i === 0 ? ' on' : ''}" data-pick="${esc(r)}">${esc(r)}<small>${esc(k.reasons[r].member ?? 'header')}</small></button>`).join('');
  const panels = reasons
    .map((r, i) => {
      const x = k.reasons[r];
      const items = x.fields
        .map((f) => `<li><span class="swatch" style="background:${f.part === 'header' ? '#7a5af8' : f.part === 'data' ? '#2b8a3e' : '#2f6fed'}"></span><code>${esc(f.name)}</code> <span class="mono">@${f.offset}+${f.size}</span>${f.straddles ? ' <b style="color:#c2255c">straddles</b>' : ''}</li>`)
        .join('');
      return `<div class="fields" data-reason="${esc(r)}"${i === 0 ? '' : ' hidden'}><h3>${esc(r)} touches line${x.lines.length === 1 ? '' : 's'} ${esc(x.lines.join(', '))}</h3><ul>${items}</ul></div>`;
    })
    .join('');
  return `<style>${rules}</style>
<div class="pills" role="tablist" aria-label="exit reason">${pills}</div>
<div class="mapwrap">
<svg id="kvmrun" data-sel="${esc(reasons[0] ?? '')}" data-rows="${k.rows}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="cache-line map of struct kvm_run">${parts.join('')}</svg>
<div>${panels}
<p class="legend"><span><span class="swatch" style="background:#7a5af8"></span>header fields</span><span><span class="swatch" style="background:#2f6fed"></span>exit-union member</span><span><span class="swatch" style="background:#2b8a3e"></span>PIO data</span><span><span class="swatch" style="background:#f59f00"></span>line touched</span><span><span class="swatch" style="background:#fff;border:2px solid #c2255c"></span>straddles a line</span></p>
<p class="note">${exitsSeen ? 'Reasons are the exits this trace saw' : ''}; offsets from the running kernel's BTF of <code>struct kvm_run</code> (${k.size} B, ${k.rows} lines of ${L} B).</p>
</div></div>`;
}

/** Upper / lower bound of a histogram bucket, about (a bucket is 1/32 to 1/64 of its value wide). */
const BUCKET_RATIO = 1 + 1 / BUCKETS_PER_OCTAVE;

function histogram(i: IoctlSummary): string {
  // SVG user units: the plot area; the axis labels take 14 more below it.
  const plotWidth = 250;
  const plotHeight = 70;
  const { bounds_ns: b, counts: c } = i.histogram;
  if (!b.length) return '';
  const max = Math.max(...c);
  const lo = Math.log10(Math.max(1, b[0] / 1.2));
  const hi = Math.log10(b[b.length - 1]) + 0.05;
  const sx = (v: number) => ((Math.log10(Math.max(1, v)) - lo) / (hi - lo || 1)) * plotWidth;
  const bars = b
    .map((ub, k) => {
      const lb = k > 0 && b[k - 1] < ub ? Math.max(b[k - 1], ub / BUCKET_RATIO) : ub / BUCKET_RATIO;
      const x = sx(lb);
      const w = Math.max(1.5, sx(ub) - x - 0.5);
      const h = Math.max(1, (c[k] / max) * (plotHeight - 6));
      return `<rect class="bar" x="${x.toFixed(1)}" y="${(plotHeight - h).toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}"><title>≤ ${fmtNs(ub)}: ${c[k]}</title></rect>`;
    })
    .join('');
  const mark = (v: number, label: string) =>
    `<line x1="${sx(v)}" x2="${sx(v)}" y1="0" y2="${plotHeight}" stroke="#c2255c" stroke-dasharray="2 2"/><text class="tick" x="${Math.min(plotWidth - 20, sx(v) + 2)}" y="9">${label}</text>`;
  return `<div class="hist"><h4>${esc(i.name)}</h4><div class="meta">${count(`ioctl.${i.name}.calls`, i.calls)} calls · p50 ${fmtNs(i.latency.p50_ns)} · p99 ${fmtNs(i.latency.p99_ns)} · max ${fmtNs(i.latency.max_ns)}</div>
<svg class="histogram" width="100%" viewBox="0 0 ${plotWidth} ${plotHeight + 14}">${bars}${mark(i.latency.p50_ns, 'p50')}${mark(i.latency.p99_ns, 'p99')}<line class="axis" x1="0" x2="${plotWidth}" y1="${plotHeight + 0.5}" y2="${plotHeight + 0.5}"/><text class="tick" x="0" y="${plotHeight + 12}">${fmtNs(b[0])}</text><text class="tick" x="${plotWidth}" y="${plotHeight + 12}" text-anchor="end">${fmtNs(b[b.length - 1])}</text></svg></div>`;
}

function ioctlTable(m: ReportModel): string {
  const rows = m.ioctls
    .map((i) => {
      const k = (f: string) => `ioctl.${i.name}.${f}`;
      return `<tr><td><code>${esc(i.name)}</code></td><td data-v="${i.calls}">${count(k('calls'), i.calls)}</td><td data-v="${i.errors}">${count(k('errors'), i.errors, i.errors ? 'hot' : '')}${i.errors ? ` <span class="mono" title="errno">${esc(Object.keys(i.errnos).join(' '))}</span>` : ''}</td>` +
        `<td data-v="${i.copies}">${count(k('copies'), i.copies)}</td><td data-v="${i.bytes_copied}">${count(k('bytes_copied'), i.bytes_copied)}</td>` +
        `<td data-v="${i.misaligned}">${count(k('misaligned'), i.misaligned, i.misaligned ? 'hot' : '')}</td><td data-v="${i.cacheline_cross}">${count(k('cacheline_cross'), i.cacheline_cross, i.cacheline_cross ? 'hot' : '')}</td>` +
        `<td data-v="${i.unknown_copies}">${count(k('unknown_copies'), i.unknown_copies)}</td>` +
        `<td data-v="${i.latency.p50_ns}">${fmtNs(i.latency.p50_ns)}</td><td data-v="${i.latency.p90_ns}">${fmtNs(i.latency.p90_ns)}</td><td data-v="${i.latency.p99_ns}">${fmtNs(i.latency.p99_ns)}</td><td data-v="${i.latency.max_ns}">${fmtNs(i.latency.max_ns)}</td></tr>`;
    })
    .join('\n');
  return `<div class="scroll"><table class="sortable" id="ioctl-table"><thead><tr><th class="l">ioctl</th><th>calls</th><th>errors</th><th>buffers</th><th>bytes</th><th>misaligned</th><th>crossing</th><th title="copies whose length the capture does not reveal">unknown len</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

function worstTable(m: ReportModel): string {
  const rows = m.ioctls.flatMap((i) =>
    i.worst.map(
      (f) =>
        `<tr><td><code>${esc(i.name)}</code></td><td class="l">${esc(f.what)}</td><td class="l">${esc(f.dir)}</td><td class="l"><code>${esc(f.addr)}</code></td><td>${f.len}</td><td>${f.align}</td><td>${f.lines} / ${f.min_lines}</td><td class="l">${f.misaligned ? '<b style="color:#c2255c">misaligned</b> ' : ''}${f.cacheline_cross ? '<b style="color:#e8590c">crossing</b>' : ''}</td><td class="l">${esc(f.source)}${f.hook || f.via ? ` <span class="mono">${esc(f.hook ?? f.via)}</span>` : ''}</td><td class="l mono" title="pid ${f.pid}">${f.tid} ${esc(f.comm)}</td></tr>`,
    ),
  );
  if (!rows.length) return '<p class="empty">No misaligned or line-crossing buffers.</p>';
  return `<div class="scroll"><table id="worst-table"><thead><tr><th class="l">ioctl</th><th class="l">buffer</th><th class="l">dir</th><th class="l">address</th><th>len</th><th>align</th><th>lines / needed</th><th class="l">flags</th><th class="l">source</th><th class="l">tid</th></tr></thead><tbody>${rows.join('\n')}</tbody></table></div>`;
}

function vcpuTable(m: ReportModel): string {
  if (!m.vcpus.length) return '<p class="empty">No vCPUs in this trace.</p>';
  const rows = m.vcpus
    .map((v) => {
      const id = `vcpu.${v.pid}/${v.vcpu}`;
      const exits = Object.entries(v.exits).map(([r, n]) => `<code>${esc(r)}</code> ${count(`${id}.exits.${r}`, n)}`).join(' · ') || '<span class="empty">none</span>';
      const lines = Object.entries(v.lines)
        .map(([r, l]) => `<div><code>${esc(r)}</code>: line${l.lines.length === 1 ? '' : 's'} ${esc(l.lines.join(', '))}${l.straddling.length ? ` <span style="color:#c2255c">(straddling: ${esc(l.straddling.join(', '))})</span>` : ''}${l.user_lines.length ? ` <span class="mono" title="user addresses of those lines">${esc(l.user_lines.join(' '))}</span>` : ''}</div>`)
        .join('');
      return `<tr><td>${v.pid}</td><td>${v.vcpu}</td><td class="l"><code>${esc(v.kernel_addr ?? '?')}</code></td><td class="l"><code>${esc(v.user_addr ?? '?')}</code></td><td>${v.mmap_size ?? '?'}</td><td>${count(`${id}.runs`, v.runs)}</td><td class="l">${exits}</td><td class="l" style="white-space:normal">${lines}</td></tr>`;
    })
    .join('\n');
  return `<div class="scroll"><table id="vcpu-table"><thead><tr><th class="l">pid</th><th>vcpu</th><th class="l">kvm_run (kernel)</th><th class="l">kvm_run (user)</th><th>mmap</th><th>KVM_RUN</th><th class="l">exits</th><th class="l">kvm_run lines touched per exit reason</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

const SCRIPT = `
(function(){
  var map=document.getElementById('kvmrun');
  var pills=document.querySelectorAll('[data-pick]');
  function pick(r){
    if(map)map.setAttribute('data-sel',r);
    pills.forEach(function(b){b.classList.toggle('on',b.getAttribute('data-pick')===r);});
    document.querySelectorAll('.fields').forEach(function(el){el.hidden=el.getAttribute('data-reason')!==r;});
  }
  pills.forEach(function(b){b.addEventListener('click',function(){pick(b.getAttribute('data-pick'));});});
  var want=decodeURIComponent((location.hash.match(/reason=([^&]+)/)||[])[1]||'');
  var first=pills.length?pills[0].getAttribute('data-pick'):null;
  pills.forEach(function(b){if(b.getAttribute('data-pick')===want)first=want;});
  if(first)pick(first);
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var body=t.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        var dir=th.getAttribute('data-dir')==='desc'?1:-1;th.setAttribute('data-dir',dir===1?'asc':'desc');
        rows.sort(function(a,b){var x=a.cells[col],y=b.cells[col];
          var vx=x.getAttribute('data-v'),vy=y.getAttribute('data-v');
          if(vx!==null&&vy!==null)return dir*(Number(vx)-Number(vy));
          return dir*x.textContent.localeCompare(y.textContent);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  document.body.setAttribute('data-render-ok','1');
})();`;

export function renderHtml(m: ReportModel): string {
  const cap = m.capture;
  const sub = [
    `<code>${esc(m.source.file)}</code>`,
    `${num(m.source.records)} records`,
    cap.strategy ? `strategy ${esc(cap.strategy)}` : '',
    cap.duration_s !== null ? `${cap.duration_s.toFixed(2)} s` : '',
    `${m.line_size}-byte cache lines`,
    `buffer flags: ${esc(m.flags_from)}`,
  ].filter(Boolean).join(' · ');
  const hists = m.ioctls.filter((i) => i.latency.count > 0).slice(0, 30).map(histogram).join('\n');
  const notes = m.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('');
  const leaked = m.fds.leaked_list.map((l) => `<li class="mono">pid ${l.pid} fd ${l.fd} (${esc(l.fd_kind)})</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>kvm-trace report — ${esc(m.source.file)}</title>
<style>${CSS}</style></head>
<body data-render-ok="0" data-errors="0">
<script>window.addEventListener('error',function(){var b=document.body;b.setAttribute('data-errors',String(Number(b.getAttribute('data-errors')||0)+1));});</script>
<header><h1>kvm-trace report</h1><div class="sub">${sub}</div></header>
<main>
${cards(m)}
<section id="map"><h2>struct kvm_run, one cache line per row</h2>
<p class="lede">What each exit makes the kernel write and the VMM read: pick an exit reason to highlight its fields and the lines they touch. A field outlined in red straddles two lines.</p>
${m.kvm_run ? runMap(m.kvm_run) : '<p class="empty">No kvm_run map: the kernel BTF was not available when this report was made.</p>'}
</section>
<section id="ioctls"><h2>Ioctls</h2><p class="lede">Calls, errors, the user buffers the kernel copied and how many were misaligned or crossed more cache lines than their length needs; latency percentiles from the trace (click a column to sort).</p>
${m.ioctls.length ? ioctlTable(m) : '<p class="empty">No ioctl records.</p>'}
</section>
<section id="latency"><h2>Latency per ioctl</h2><p class="lede">Histograms on a log scale (bucket width ≤ 1/32 of its value); dashed lines mark p50 and p99.</p>
<div class="grid">${hists || '<p class="empty">No latencies.</p>'}</div></section>
<section id="crossing"><h2>Buffer flags per ioctl</h2>${flagBarsHtml(m, { esc, count, num })}</section>
${copySourcesHtml(m, { esc, count })}
<section id="worst"><h2>Worst buffers</h2><p class="lede">Per ioctl, the copied buffers with the most extra cache lines, then misaligned ones, with the thread that passed them.</p>${worstTable(m)}</section>
<section id="vcpus"><h2>vCPUs</h2><p class="lede">Where each vCPU's <code>struct kvm_run</code> lives in the kernel and in the VMM, its exits, and the kvm_run lines each exit reason touched.</p>${vcpuTable(m)}</section>${exitPathHtml(m, { esc, count })}
<section id="health"><h2>Capture health</h2>
<p>Records lost: ${count('lost', m.lost, m.lost ? 'hot' : '')} · records read: ${count('records', m.source.records)} · fds opened ${count('fds.opened', m.fds.opened)}, closed ${count('fds.closed', m.fds.closed)}, leaked ${count('fds.leaked', m.fds.leaked, m.fds.leaked ? 'hot' : '')}${m.capture.unknown_ioctls !== null ? ` · unknown ioctls ${num(m.capture.unknown_ioctls)}` : ''}</p>
<p>Totals: ${count('total.unknown_copies', m.totals.unknown_copies)} copies of unknown length.</p>
${leaked ? `<p>Leaked fds (still open when the process exited or the capture stopped):</p><ul>${leaked}</ul>` : ''}${notes}</section>
<footer>kvm-trace · generated from ${esc(m.source.file)} · self-contained page, nothing loaded from the network</footer>
</main>
<script>${SCRIPT}</script>
</body></html>
`;
}
