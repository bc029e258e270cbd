/**
 * Single flight: callers asking for the same key while an answer is being computed share that one
 * computation instead of starting their own. `status` asks QEMU (QMP, `qemu-img info`) for every
 * disk, so a burst of status requests (a monitoring loop, a script, 10,000 pipelined requests on the
 * control socket) costs one round of QEMU questions per key, not one per request, and hook events
 * behind them are still answered within their bound. Nothing is cached after the answer: the next
 * request asks again.
 */
export function singleFlight<K, V>(compute: (key: K) => Promise<V>): (key: K) => Promise<V> {
  const inFlight = new Map<K, Promise<V>>();
  return (key: K): Promise<V> => {
    const running = inFlight.get(key);
    if (running) return running;
    const p = compute(key).finally(() => inFlight.delete(key));
    inFlight.set(key, p);
    return p;
  };
}
