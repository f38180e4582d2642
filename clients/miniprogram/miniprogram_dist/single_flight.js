"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.SingleFlight = void 0;
/**
 * One run of an async task at a time: callers arriving while it runs share its result instead
 * of starting their own. Used for login (one wx.login code per burst of callers) and refresh
 * (a refresh token is single use: two concurrent refreshes would look like token theft and
 * revoke the session).
 */
class SingleFlight {
    constructor() {
        this.running = null;
    }
    run(task) {
        if (this.running)
            return this.running;
        // A task that throws before its first await still settles the shared promise.
        const running = new Promise((resolve) => resolve(task()));
        this.running = running;
        // Settled either way, the next caller starts afresh. (No `finally`: not on old runtimes.)
        const done = () => {
            if (this.running === running)
                this.running = null;
        };
        running.then(done, done);
        return running;
    }
}
exports.SingleFlight = SingleFlight;
