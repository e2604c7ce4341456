// Runs Azurite in this Node process and makes sure it closes gracefully exactly once.
//
//   node azurite_guard.js <azurite entry script> [azurite options...]
//
// Azurite keeps its data in memory and writes it to --location every 5 s and on SIGINT (its
// graceful close). It listens with process.once("SIGINT"): a second SIGINT that arrives while it
// is still closing hits Node's default action and kills it before it has saved. That happens:
// PR_SET_PDEATHSIG signals the child once per thread of a dying parent (the child is handed from
// thread to thread as they exit), so a SIGKILLed devhost with many threads sent several SIGINTs.
//
// This guard
// - keeps a SIGINT listener of its own for the whole life of the process, so Node never takes
//   the default action: the first SIGINT starts Azurite's close, later ones are ignored;
// - closes Azurite when its stdin reaches end of file. The parent (devhost) holds the only write
//   end of that pipe, so EOF means the parent has stopped it or is gone, however it died: exactly
//   one event. (So stdin must be that pipe: /dev/null would close Azurite at once.)
"use strict";

const [nodePath, , entry, ...options] = process.argv;
process.argv = [nodePath, entry, ...options]; // what Azurite's option parser expects

let closing = false;

function azuriteListens() {
  // Azurite registers its own SIGINT listener once it is serving; ours is always there.
  return process.listenerCount("SIGINT") > 1;
}

function closeOnceStarted() {
  // Azurite's start-up ends with its listener registered (or with process.exit on an error).
  const timer = setInterval(() => {
    if (azuriteListens()) {
      clearInterval(timer);
      process.emit("SIGINT", "SIGINT");
    }
  }, 20);
}

process.on("SIGINT", () => {
  if (closing) {
    return; // a repeated SIGINT: Azurite is already closing
  }
  closing = true;
  process.stdin.destroy(); // stop watching: the process may exit once Azurite has closed
  if (!azuriteListens()) {
    closeOnceStarted(); // it arrived during start-up: Azurite's own listener did not get it
  }
  // Otherwise Azurite's own listener runs next, for this same signal.
});

process.stdin.on("error", () => {}); // followed by "close"
process.stdin.on("close", () => {
  if (!closing) {
    process.emit("SIGINT", "SIGINT");
  }
});
process.stdin.resume(); // read (and drop) anything, to see the end of file

require(entry);
