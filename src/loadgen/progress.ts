// Progress of a trace replay on stderr: on a terminal a bar redrawn in place
// (`\r`), elsewhere (CI logs, a file) a plain line now and then, since a
// stream of carriage returns is unreadable there. The formatting is pure and
// tested; Progress only owns the timer and the terminal.

export interface ProgressState {
  readonly total: number;
  readonly sent: number;
  readonly answered: number;
  /** ms since the replay started. */
  readonly elapsedMs: number;
  /** When the last invocation is due, ms from the start: sending ends then, in an open loop. */
  readonly scheduleEndMs: number;
  /** The lag of the latest send, ms: how far behind its schedule it left. */
  readonly lagMs: number;
  /** The largest lag of any send so far, ms. */
  readonly maxLagMs: number;
}

/** 75 ms → "0:00", 65 s → "1:05", 2 h → "2:00:00". */
export function formatClock(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/**
 * Time left: until the schedule ends while sends remain (an open loop sends
 * on time whatever the answers do); unknown once everything is sent and
 * answers are awaited, since those take what the cluster takes.
 */
export function eta(s: ProgressState): string {
  if (s.answered >= s.total) return formatClock(0);
  if (s.sent >= s.total) return '?';
  return formatClock(s.scheduleEndMs - s.elapsedMs);
}

function percent(s: ProgressState): number {
  return s.total === 0 ? 100 : Math.floor((100 * s.sent) / s.total);
}

/** The plain line for logs. */
export function formatProgressLine(s: ProgressState): string {
  return (
    `sent ${s.sent}/${s.total} (${percent(s)}%), answered ${s.answered}, ` +
    `elapsed ${formatClock(s.elapsedMs)}, ETA ${eta(s)}, lag ${Math.round(s.lagMs)} ms, max lag ${Math.round(s.maxLagMs)} ms`
  );
}

/**
 * The bar for a terminal `columns` wide: never wider than columns − 1, as a
 * line that wraps can no longer be redrawn with `\r`. The bar itself gets
 * what the figures leave, 10 to 40 cells; on a very narrow terminal the
 * figures are cut.
 */
export function formatProgressBar(s: ProgressState, columns: number): string {
  const figures =
    ` ${String(percent(s)).padStart(3)}% sent ${s.sent}/${s.total} answered ${s.answered}` +
    ` ${formatClock(s.elapsedMs)} ETA ${eta(s)} lag ${Math.round(s.lagMs)} ms`;
  const width = Math.max(10, Math.min(40, columns - 1 - figures.length - 2));
  const filled = s.total === 0 ? width : Math.floor((width * s.sent) / s.total);
  const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]${figures}`;
  return line.slice(0, Math.max(0, columns - 1));
}

export type ProgressMode = 'bar' | 'lines' | 'none';

export interface ProgressOptions {
  readonly mode: ProgressMode;
  /** How often to redraw the bar or print a line, ms. */
  readonly intervalMs: number;
  /** Where lines go (mode lines), and other messages in any mode. */
  readonly log: (line: string) => void;
  /** The terminal, for mode bar. */
  readonly terminal?: { write(text: string): unknown; readonly columns?: number };
}

const CLEAR_LINE = '\r\x1b[K';

/** Reports a replay's progress until stop(); log() prints a message without garbling the bar. */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private read: (() => ProgressState) | undefined;
  private drawn = false;

  constructor(private readonly options: ProgressOptions) {}

  start(read: () => ProgressState): void {
    this.read = read;
    if (this.options.mode === 'none' || this.options.intervalMs <= 0) return;
    this.timer = setInterval(() => this.report(), this.options.intervalMs);
    this.timer.unref();
  }

  log(line: string): void {
    if (this.drawn) this.options.terminal?.write(CLEAR_LINE);
    this.options.log(line);
    if (this.drawn) this.draw();
  }

  /** Stops the timer and reports the final state once (the bar is left in place, ended with a newline). */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.report();
    if (this.drawn) this.options.terminal?.write('\n');
    this.drawn = false;
  }

  private report(): void {
    if (this.options.mode === 'bar') this.draw();
    else if (this.read) this.options.log(formatProgressLine(this.read()));
  }

  private draw(): void {
    const terminal = this.options.terminal;
    if (!terminal || !this.read) return;
    // A pseudo-terminal may say 0 columns (script(1), some CI runners): assume 80.
    const columns = terminal.columns !== undefined && terminal.columns > 0 ? terminal.columns : 80;
    terminal.write(CLEAR_LINE + formatProgressBar(this.read(), columns));
    this.drawn = true;
  }
}
