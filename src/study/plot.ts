/**
 * Plots of the allocator study, drawn with Vega-Lite (compiled to a Vega
 * spec and rendered headless to SVG by vega's View with renderer 'none')
 * and converted to PNG by @resvg/resvg-js. One chart per panel, stacked;
 * every panel colours its series by allocator, so the legend names each
 * allocator that ran. The Vega-Lite spec with its data and the run's
 * metadata is written next to the picture (FILE.vl.json).
 */
import { writeFileSync } from 'node:fs';
import { DmemError, InvalidArgumentError } from '../errors.js';
import type { RunMeta } from './run.js';

/** One chart: `y` against `x` for every row, one line per allocator. */
export interface Panel {
  title: string;
  x: { field: string; title: string; type?: 'quantitative' | 'ordinal' };
  y: { field: string; title: string; log?: boolean };
  rows: readonly object[];
  /** A second field that splits each allocator's line (dashed per value), e.g. procs. */
  dash?: string;
}

/** The Vega-Lite spec of `panels` (vertically concatenated). */
export function plotSpec(panels: readonly Panel[], meta: RunMeta): Record<string, unknown> {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    description: `dmem allocator study, ${meta.host} (${meta.cpus} CPUs), dmem ${meta.version}, ${meta.time}`,
    title: { text: 'dmem allocator study', subtitle: `${meta.host}, ${meta.cpus} CPUs, node ${meta.node}, ${meta.time}` },
    usermeta: { meta },
    vconcat: panels.map((p) => ({
      title: p.title,
      width: 420,
      height: 200,
      data: { values: p.rows },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: p.x.field, type: p.x.type ?? 'quantitative', title: p.x.title, ...((p.x.type ?? 'quantitative') === 'quantitative' ? { axis: { tickMinStep: 1, format: 'd' } } : {}) },
        y: { field: p.y.field, type: 'quantitative', title: p.y.title, ...(p.y.log ? { scale: { type: 'log' } } : {}) },
        color: { field: 'allocator', type: 'nominal', title: 'allocator' },
        ...(p.dash ? { strokeDash: { field: p.dash, type: 'ordinal', title: p.dash } } : {}),
      },
    })),
    resolve: { scale: { color: 'shared' } },
  };
}

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const vl = await import('vega-lite');
  const vega = await import('vega');
  const compiled = vl.compile(spec as unknown as Parameters<typeof vl.compile>[0]).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Writes the plot of `panels` to `file` (.svg or .png) and its spec with
 * data and metadata to `file`.vl.json. Returns the paths written.
 * @throws InvalidArgumentError for another extension or no panel;
 *   DmemError PLOT_PNG when PNG conversion is unavailable (the SVG and spec are still written)
 */
export async function writePlot(file: string, panels: readonly Panel[], meta: RunMeta): Promise<string[]> {
  const lower = file.toLowerCase();
  if (!lower.endsWith('.svg') && !lower.endsWith('.png')) throw new InvalidArgumentError(`--plot ${file}: the file must end in .svg or .png`);
  const used = panels.filter((p) => p.rows.length > 0);
  if (used.length === 0) throw new InvalidArgumentError(`--plot ${file}: no results to plot`);
  const spec = plotSpec(used, meta);
  writeFileSync(`${file}.vl.json`, `${JSON.stringify(spec, null, 2)}\n`);
  const svg = await renderSvg(spec);
  if (lower.endsWith('.svg')) {
    writeFileSync(file, svg);
    return [file, `${file}.vl.json`];
  }
  let Resvg: typeof import('@resvg/resvg-js').Resvg;
  try {
    ({ Resvg } = await import('@resvg/resvg-js'));
  } catch (cause) {
    const svgFile = file.replace(/\.png$/i, '.svg');
    writeFileSync(svgFile, svg);
    throw new DmemError('PLOT_PNG', `cannot write PNG ${file}: @resvg/resvg-js is not installed for this platform (${(cause as Error).message}); wrote ${svgFile} instead`, { cause });
  }
  const png = new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true } }).render().asPng();
  writeFileSync(file, png);
  return [file, `${file}.vl.json`];
}
