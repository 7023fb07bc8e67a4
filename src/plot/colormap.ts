/**
 * matplotlib's colour maps as evenly spaced anchors with linear interpolation between them:
 * close enough to the 256-entry tables for heatmaps, and small enough to read. viridis and
 * inferno are perceptually uniform; Blues starts at white, so empty cells stay blank.
 */
export type Rgb = [number, number, number];
export type ColorMap = (t: number) => Rgb;

function fromHex(hex: string): Rgb {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function interpolated(anchors: string[]): ColorMap {
  const rgb = anchors.map(fromHex);
  return (t) => {
    const x = (Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0) * (rgb.length - 1);
    const i = Math.min(Math.floor(x), rgb.length - 2);
    const f = x - i;
    const [a, b] = [rgb[i], rgb[i + 1]];
    return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)) as Rgb;
  };
}

export const viridis: ColorMap = interpolated([
  "#440154",
  "#482878",
  "#3e4a89",
  "#31688e",
  "#26828e",
  "#1f9e89",
  "#35b779",
  "#6dcd59",
  "#b4de2c",
  "#fde725",
]);

export const inferno: ColorMap = interpolated([
  "#000004",
  "#1b0c42",
  "#4b0c6b",
  "#781c6d",
  "#a52c60",
  "#cf4446",
  "#ed6925",
  "#fb9a06",
  "#f7d03c",
  "#fcffa4",
]);

export const blues: ColorMap = interpolated([
  "#f7fbff",
  "#deebf7",
  "#c6dbef",
  "#9ecae1",
  "#6baed6",
  "#4292c6",
  "#2171b5",
  "#08519c",
  "#08306b",
]);

export function rgbHex([r, g, b]: Rgb): string {
  return `#${((1 << 24) | (r << 16) | (g << 8) | b).toString(16).slice(1)}`;
}

/** Black or white, whichever reads better on top of `rgb` (WCAG relative luminance). */
export function contrastText([r, g, b]: Rgb): string {
  const lin = (c: number) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  return luminance > 0.179 ? "#000000" : "#ffffff";
}
