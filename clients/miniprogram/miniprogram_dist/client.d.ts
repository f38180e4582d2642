import { BindPhoneResult, IdentityClientOptions, PhoneNumberEvent, RequestOptions, Session, User } from './types';
export declare class IdentityClient {
    private readonly wx;
    private readonly baseUrl;
    private readonly appid;
    private readonly store;
    private readonly flights;
    private via;
    private cloudFunction;
    constructor(options: IdentityClientOptions);
    /** Silent login: wx.login, then `POST /v1/wechat/login`. Concurrent callers share one. */
    login(): Promise<User>;
    /** Login through the shipped cloud function (WeChat cloud development), saved the same way. */
    cloudLogin(options?: {
        name?: string;
    }): Promise<User>;
    /** Whether tokens are stored (they may still turn out to be expired or revoked). */
    isLoggedIn(): boolean;
    /**
     * A call to the service as the user: logs in first when there are no tokens; on a 401,
     * refreshes once and retries once; when the refresh is refused, logs in once and retries
     * once. Answers the parsed JSON body (`undefined` for 204).
     */
    request<T>(options: RequestOptions): Promise<T>;
    me(): Promise<User>;
    /**
     * The avatar/nickname fill-in: the avatar (chooseAvatar's temporary file) is uploaded first,
     * then the nickname is set; answers the user as it then is. A refused nickname
     * (`content_rejected`) leaves the uploaded avatar in place.
     */
    updateProfile(update: {
        nickname?: string;
        avatarTempFilePath?: string;
    }): Promise<User>;
    /** From `bindgetphonenumber`'s event; a refusal (no `detail.code`) is `{ status: 'denied' }`. */
    bindPhone(event: PhoneNumberEvent): Promise<BindPhoneResult>;
    /**
     * Legacy profile for base libraries whose wx.getUserProfile still answers real data: call it
     * from a tap handler, after login() (the data is sealed with the session key of the latest
     * wx.login). Answers the user with the shared profile.
     */
    authorizeLegacyProfile(options?: {
        desc?: string;
    }): Promise<User>;
    /** Withdraw what the user shared: the data stops being shown. */
    withdraw(kind: 'profile' | 'phone'): Promise<void>;
    /** The user's open sessions, newest first; `current` marks this one. */
    sessions(): Promise<Session[]>;
    /** End one of the user's sessions ("log out this device" for another device). */
    endSession(sessionId: string): Promise<void>;
    /**
     * End this session (`POST /v1/logout`). Storage is cleared whatever happens; a failure other
     * than "already ended" is still reported, since the session may then stay open on the service
     * until it expires.
     */
    logout(): Promise<void>;
    /** Erase the user's personal data (`DELETE /v1/me`); storage is cleared whatever happens. */
    eraseMe(): Promise<void>;
    private authorized;
    private usableTokens;
    /** New tokens in place of `stale`: one refresh however many callers; a login if it is refused. */
    private renew;
    private refresh;
    private signIn;
    private loginWithCode;
    private loginWithCloud;
    private adopt;
    private endQuietly;
}
