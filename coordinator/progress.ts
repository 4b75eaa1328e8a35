import cliProgress from 'cli-progress';
import type { RunLogSink } from '../src/log/run-log-sink.js';

/** Figures shown after each step. */
export interface ProgressUpdate {
  step: number;
  loss: number;
  samplesPerSecond: number;
}

/**
 * Training progress on the terminal: a progress bar with step, loss, samples per second and ETA when stdout is a
 * TTY (log lines are printed above it). Without a TTY it shows nothing extra, because the periodic progress log
 * line carries the same figures.
 */
export class ProgressDisplay {
  private readonly bars: cliProgress.MultiBar | null;
  private readonly bar: cliProgress.SingleBar | null;

  constructor(totalSteps: number, sink: RunLogSink, enabled = process.stdout.isTTY === true) {
    if (!enabled) {
      this.bars = null;
      this.bar = null;
      return;
    }
    this.bars = new cliProgress.MultiBar(
      {
        format: 'step {value}/{total} [{bar}] {percentage}% | loss {loss} | {samplesPerSecond} samples/s | ETA {eta_formatted}',
        hideCursor: true,
        clearOnComplete: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar = this.bars.create(totalSteps, 0, { loss: '-', samplesPerSecond: '-' });
    const bars = this.bars;
    sink.printLine = (text) => bars.log(text + '\n');
  }

  update(progress: ProgressUpdate): void {
    this.bar?.update(progress.step, {
      loss: progress.loss.toFixed(4),
      samplesPerSecond: progress.samplesPerSecond.toFixed(1),
    });
  }

  /** Removes the bar; later log lines print directly. */
  stop(sink: RunLogSink): void {
    this.bars?.stop();
    sink.printLine = (text) => process.stdout.write(text + '\n');
  }
}
