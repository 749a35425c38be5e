// A TCP fault proxy: forwards 127.0.0.1:<its port> to a target port and cuts
// each connection (both sides destroyed, no close handshake) after a random
// lifetime, so the client sees abrupt drops at any point of the stream.
import net from 'node:net';

export async function startFaultProxy(targetPort, { minLifeMs = 50, maxLifeMs = 400, seed = 1, cutting: startCutting = true } = {}) {
  let state = seed >>> 0 || 1;
  const random = () => {
    // xorshift32: reproducible cuts for a given seed.
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state / 0x1_0000_0000;
  };
  const stats = { connections: 0, cuts: 0 };
  let cutting = startCutting;
  const live = new Set();
  const server = net.createServer((client) => {
    stats.connections++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream, timer: undefined };
    live.add(pair);
    const end = () => {
      clearTimeout(pair.timer);
      live.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
    pair.end = end;
    if (cutting) arm(pair);
  });
  function arm(pair) {
    const life = minLifeMs + random() * (maxLifeMs - minLifeMs);
    pair.timer = setTimeout(() => {
      if (!cutting) return;
      stats.cuts++;
      pair.end();
    }, life);
  }
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    stats,
    /** Start cutting, the live connections too. */
    storm() {
      cutting = true;
      for (const p of live) if (p.timer === undefined) arm(p);
    },
    /**
     * Blackholes every live connection: nothing passes any more, in either
     * direction, and neither end is told (a half-open link). New
     * connections pass.
     */
    blackhole() {
      for (const p of live) {
        clearTimeout(p.timer);
        p.timer = setTimeout(() => {}, 0);
        p.client.unpipe(p.upstream);
        p.upstream.unpipe(p.client);
        p.client.on('data', () => {});
        p.upstream.on('data', () => {});
        stats.blackholed = (stats.blackholed ?? 0) + 1;
      }
    },
    /** Stop cutting (connections made from now on live until closed). */
    calm() { cutting = false; },
    close() {
      for (const p of live) {
        clearTimeout(p.timer);
        p.client.destroy();
        p.upstream.destroy();
      }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
