/**
 * One run of an async task at a time: callers arriving while it runs share its result instead
 * of starting their own. Used for login (one wx.login code per burst of callers) and refresh
 * (a refresh token is single use: two concurrent refreshes would look like token theft and
 * revoke the session).
 */
export declare class SingleFlight<T> {
    private running;
    run(task: () => Promise<T>): Promise<T>;
}
