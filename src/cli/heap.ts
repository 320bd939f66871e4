/**
 * Memory policy of the long-running capture commands. V8 doubles its young generation (up to 2 × 16 MB
 * semi-spaces) whenever enough bytes survive scavenges, and a capture allocates a few hundred bytes per
 * record that all die young: measured here, the young generation alone took RSS from ≈100 to ≈137 MB over
 * 400 000 records while the tracer's CPU stayed the same with it held at its initial size. The growth
 * factor is read by V8 each time it would grow, so setting it to 1 at run time holds the size (unlike
 * --max-semi-space-size, which only counts at start-up).
 */
import v8 from 'node:v8';

/** Keep V8's young generation at its initial size from now on (call once, before capturing). */
export function holdYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}
