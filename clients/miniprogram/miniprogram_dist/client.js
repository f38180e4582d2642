"use strict";
var __awaiter = (this && this.__awaiter) || function (thisArg, _arguments, P, generator) {
    function adopt(value) { return value instanceof P ? value : new P(function (resolve) { resolve(value); }); }
    return new (P || (P = Promise))(function (resolve, reject) {
        function fulfilled(value) { try { step(generator.next(value)); } catch (e) { reject(e); } }
        function rejected(value) { try { step(generator["throw"](value)); } catch (e) { reject(e); } }
        function step(result) { result.done ? resolve(result.value) : adopt(result.value).then(fulfilled, rejected); }
        step((generator = generator.apply(thisArg, _arguments || [])).next());
    });
};
Object.defineProperty(exports, "__esModule", { value: true });
exports.IdentityClient = void 0;
const errors_1 = require("./errors");
const http_1 = require("./http");
const single_flight_1 = require("./single_flight");
const tokens_1 = require("./tokens");
const wx_1 = require("./wx");
/** Refresh this long before the access token expires, so that a request rarely meets a 401. */
const REFRESH_AHEAD_MS = 60 * 1000;
/** `GET /v1/me/sessions` pages: the service's largest, and a bound on how many we follow. */
const SESSIONS_PAGE_LIMIT = 200;
const SESSIONS_MAX_PAGES = 10;
const DEFAULT_CLOUD_FUNCTION = 'login';
const DEFAULT_PROFILE_DESC = '用于完善会员资料';
// Per wx and storage entry, not per client: two clients of one app (one per page, say) must not
// refresh the same single-use refresh token side by side, or the service sees a reuse and
// revokes the session.
const flightsByWx = new WeakMap();
function flightsFor(wx, key) {
    let byKey = flightsByWx.get(wx);
    if (!byKey) {
        byKey = {};
        flightsByWx.set(wx, byKey);
    }
    if (!byKey[key])
        byKey[key] = { login: new single_flight_1.SingleFlight(), renew: new single_flight_1.SingleFlight() };
    return byKey[key];
}
class IdentityClient {
    constructor(options) {
        // How a silent login goes when storage has no tokens to tell: the last explicit way.
        this.via = 'code';
        this.cloudFunction = DEFAULT_CLOUD_FUNCTION;
        if (!options || typeof options.baseUrl !== 'string' || options.baseUrl === '') {
            throw new TypeError('IdentityClient: baseUrl is required');
        }
        if (typeof options.appid !== 'string' || options.appid === '') {
            throw new TypeError('IdentityClient: appid is required');
        }
        this.wx = options.wx || (0, wx_1.globalWx)();
        this.baseUrl = options.baseUrl.replace(/\/+$/, '');
        this.appid = options.appid;
        this.store = new tokens_1.TokenStore(this.wx, options.storageKey || 'identityd', options.appid);
        this.flights = flightsFor(this.wx, this.store.key);
    }
    /** Silent login: wx.login, then `POST /v1/wechat/login`. Concurrent callers share one. */
    login() {
        this.via = 'code';
        return this.signIn('code').then((s) => s.user);
    }
    /** Login through the shipped cloud function (WeChat cloud development), saved the same way. */
    cloudLogin(options) {
        this.via = 'cloud';
        this.cloudFunction = (options && options.name) || DEFAULT_CLOUD_FUNCTION;
        return this.signIn('cloud').then((s) => s.user);
    }
    /** Whether tokens are stored (they may still turn out to be expired or revoked). */
    isLoggedIn() {
        return this.store.load() !== null;
    }
    /**
     * A call to the service as the user: logs in first when there are no tokens; on a 401,
     * refreshes once and retries once; when the refresh is refused, logs in once and retries
     * once. Answers the parsed JSON body (`undefined` for 204).
     */
    request(options) {
        const method = options.method || 'GET';
        const path = method === 'GET' ? withQuery(options.path, options.data) : options.path;
        const data = method === 'GET' ? undefined : options.data;
        return this.authorized((token) => (0, http_1.request)(this.wx, {
            url: this.baseUrl + path, method, header: bearer(token), data
        }), 'login').then((answer) => json(answer));
    }
    me() {
        return this.request({ path: '/v1/me' });
    }
    /**
     * The avatar/nickname fill-in: the avatar (chooseAvatar's temporary file) is uploaded first,
     * then the nickname is set; answers the user as it then is. A refused nickname
     * (`content_rejected`) leaves the uploaded avatar in place.
     */
    updateProfile(update) {
        return __awaiter(this, void 0, void 0, function* () {
            if (update.avatarTempFilePath) {
                const filePath = update.avatarTempFilePath;
                yield this.authorized((token) => (0, http_1.upload)(this.wx, {
                    url: this.baseUrl + '/v1/me/avatar', filePath, name: 'file', header: bearer(token)
                }), 'login');
            }
            if (update.nickname !== undefined) {
                yield this.request({ path: '/v1/me/profile', method: 'PUT', data: { nickname: update.nickname } });
            }
            return this.me();
        });
    }
    /** From `bindgetphonenumber`'s event; a refusal (no `detail.code`) is `{ status: 'denied' }`. */
    bindPhone(event) {
        return __awaiter(this, void 0, void 0, function* () {
            const code = event && event.detail && event.detail.code;
            if (!code)
                return { status: 'denied' };
            yield this.request({ path: '/v1/me/phone', method: 'POST', data: { code } });
            return { status: 'bound', user: yield this.me() };
        });
    }
    /**
     * Legacy profile for base libraries whose wx.getUserProfile still answers real data: call it
     * from a tap handler, after login() (the data is sealed with the session key of the latest
     * wx.login). Answers the user with the shared profile.
     */
    authorizeLegacyProfile(options) {
        return __awaiter(this, void 0, void 0, function* () {
            const desc = (options && options.desc) || DEFAULT_PROFILE_DESC;
            const profile = yield getUserProfile(this.wx, desc);
            yield this.request({
                path: '/v1/me/profile/authorize',
                method: 'POST',
                data: {
                    raw_data: profile.rawData,
                    signature: profile.signature,
                    encrypted_data: profile.encryptedData,
                    iv: profile.iv
                }
            });
            return this.me();
        });
    }
    /** Withdraw what the user shared: the data stops being shown. */
    withdraw(kind) {
        return __awaiter(this, void 0, void 0, function* () {
            if (kind !== 'profile' && kind !== 'phone') {
                throw new TypeError("withdraw: kind is 'profile' or 'phone'");
            }
            yield this.request({ path: `/v1/me/authorizations/${kind}`, method: 'DELETE' });
        });
    }
    /** The user's open sessions, newest first; `current` marks this one. */
    sessions() {
        return __awaiter(this, void 0, void 0, function* () {
            const all = [];
            let cursor;
            for (let page = 0; page < SESSIONS_MAX_PAGES; page++) {
                const data = { limit: SESSIONS_PAGE_LIMIT };
                if (cursor)
                    data.cursor = cursor;
                const answer = yield this.request({
                    path: '/v1/me/sessions', data
                });
                if (!answer || !Array.isArray(answer.items)) {
                    throw new errors_1.IdentityError('invalid_response', 200, 'sessions: no items');
                }
                all.push(...answer.items);
                if (!answer.next_cursor)
                    break;
                cursor = answer.next_cursor;
            }
            return all;
        });
    }
    /** End one of the user's sessions ("log out this device" for another device). */
    endSession(sessionId) {
        return __awaiter(this, void 0, void 0, function* () {
            yield this.request({ path: `/v1/me/sessions/${encodeURIComponent(sessionId)}`, method: 'DELETE' });
        });
    }
    /**
     * End this session (`POST /v1/logout`). Storage is cleared whatever happens; a failure other
     * than "already ended" is still reported, since the session may then stay open on the service
     * until it expires.
     */
    logout() {
        return __awaiter(this, void 0, void 0, function* () {
            if (!this.store.load())
                return;
            try {
                yield this.authorized((token) => (0, http_1.request)(this.wx, {
                    url: this.baseUrl + '/v1/logout', method: 'POST', header: bearer(token)
                }), 'report');
            }
            catch (err) {
                if (!(err instanceof errors_1.IdentityError && err.status === 401))
                    throw err;
            }
            finally {
                this.store.clear();
            }
        });
    }
    /** Erase the user's personal data (`DELETE /v1/me`); storage is cleared whatever happens. */
    eraseMe() {
        return __awaiter(this, void 0, void 0, function* () {
            try {
                yield this.request({ path: '/v1/me', method: 'DELETE' });
            }
            finally {
                this.store.clear();
            }
        });
    }
    // The 401 discipline: at most one renewal and one retry per call, so never a loop.
    authorized(send, whenLost) {
        return __awaiter(this, void 0, void 0, function* () {
            let tokens = yield this.usableTokens(whenLost);
            let answer = yield send(tokens.access_token);
            if (answer.status === 401) {
                tokens = yield this.renew(tokens, whenLost);
                answer = yield send(tokens.access_token);
            }
            if (answer.status < 200 || answer.status >= 300) {
                throw (0, errors_1.problemError)(answer.status, answer.body, answer.header);
            }
            return answer;
        });
    }
    usableTokens(whenLost) {
        return __awaiter(this, void 0, void 0, function* () {
            const tokens = this.store.load();
            if (!tokens) {
                if (whenLost === 'report')
                    throw notLoggedIn();
                return (yield this.signIn(this.via)).tokens;
            }
            if (Date.now() >= tokens.expires_at - REFRESH_AHEAD_MS)
                return this.renew(tokens, whenLost);
            return tokens;
        });
    }
    /** New tokens in place of `stale`: one refresh however many callers; a login if it is refused. */
    renew(stale, whenLost) {
        const current = this.store.load();
        // Another caller renewed already (our 401 was for the access token it replaced).
        if (current && current.access_token !== stale.access_token)
            return Promise.resolve(current);
        return this.flights.renew.run(() => this.refresh(current || stale, whenLost));
    }
    refresh(tokens, whenLost) {
        return __awaiter(this, void 0, void 0, function* () {
            const answer = yield (0, http_1.request)(this.wx, {
                url: this.baseUrl + '/v1/token/refresh',
                method: 'POST',
                header: {},
                data: { refresh_token: tokens.refresh_token }
            });
            if (answer.status === 200) {
                const renewed = tokensOf(answer.body, tokens.via);
                this.store.save(renewed);
                return renewed;
            }
            if (answer.status !== 401)
                throw (0, errors_1.problemError)(answer.status, answer.body, answer.header);
            // Spent, reused, revoked or past its lifetime: this session is over for good.
            this.store.clear();
            if (whenLost === 'report')
                throw (0, errors_1.problemError)(answer.status, answer.body, answer.header);
            return (yield this.signIn(tokens.via)).tokens;
        });
    }
    signIn(via) {
        return this.flights.login.run(() => via === 'cloud' ? this.loginWithCloud() : this.loginWithCode());
    }
    loginWithCode() {
        return __awaiter(this, void 0, void 0, function* () {
            const code = yield wxLogin(this.wx);
            const answer = yield (0, http_1.request)(this.wx, {
                url: this.baseUrl + '/v1/wechat/login',
                method: 'POST',
                header: {},
                data: { appid: this.appid, code }
            });
            if (answer.status !== 200)
                throw (0, errors_1.problemError)(answer.status, answer.body, answer.header);
            return this.adopt(answer.body, 'code');
        });
    }
    loginWithCloud() {
        return __awaiter(this, void 0, void 0, function* () {
            const result = yield callCloudFunction(this.wx, this.cloudFunction);
            return this.adopt(result, 'cloud');
        });
    }
    adopt(body, via) {
        const tokens = tokensOf(body, via);
        const user = body.user;
        if (!user || typeof user !== 'object' || typeof user.user_id !== 'string') {
            throw new errors_1.IdentityError('invalid_response', 200, 'login answer without a user');
        }
        const replaced = this.store.load();
        this.store.save(tokens);
        if (replaced)
            this.endQuietly(replaced);
        return { user, tokens };
    }
    // A login on a phone that already had a session (login() at every launch, say) replaces it:
    // end the old one, so the user's session list shows this phone once. Best effort: an expired
    // access token cannot, and the old session then ends by its idle lifetime.
    endQuietly(replaced) {
        if (Date.now() >= replaced.expires_at)
            return;
        const ignore = () => undefined;
        (0, http_1.request)(this.wx, {
            url: this.baseUrl + '/v1/logout', method: 'POST', header: bearer(replaced.access_token)
        }).then(ignore, ignore);
    }
}
exports.IdentityClient = IdentityClient;
function bearer(token) {
    return { authorization: `Bearer ${token}` };
}
function notLoggedIn() {
    return new errors_1.IdentityError('unauthorized', 401, 'not logged in');
}
function json(answer) {
    if (answer.body === http_1.NOT_JSON) {
        throw new errors_1.IdentityError('invalid_response', answer.status, 'the answer is not JSON');
    }
    return answer.body;
}
/** The token fields of a login or refresh answer, checked: storage must never hold half. */
function tokensOf(body, via) {
    const b = (body || {});
    if (typeof b.access_token !== 'string' || b.access_token === '' ||
        typeof b.refresh_token !== 'string' || b.refresh_token === '' ||
        typeof b.expires_in !== 'number') {
        throw new errors_1.IdentityError('invalid_response', 200, 'an answer without tokens');
    }
    return {
        access_token: b.access_token,
        refresh_token: b.refresh_token,
        expires_at: Date.now() + b.expires_in * 1000,
        via
    };
}
function withQuery(path, data) {
    if (data === undefined || data === null || typeof data !== 'object')
        return path;
    const record = data;
    const pairs = Object.keys(record)
        .filter((key) => record[key] !== undefined && record[key] !== null)
        .map((key) => `${encodeURIComponent(key)}=${encodeURIComponent(String(record[key]))}`);
    if (pairs.length === 0)
        return path;
    return path + (path.indexOf('?') < 0 ? '?' : '&') + pairs.join('&');
}
function wxLogin(wx) {
    return new Promise((resolve, reject) => {
        wx.login({
            success: (res) => {
                if (res && res.code)
                    resolve(res.code);
                else
                    reject(new errors_1.IdentityError('wechat_login_failed', 0, 'wx.login gave no code'));
            },
            fail: (err) => reject(new errors_1.IdentityError('wechat_login_failed', 0, (err && err.errMsg) || 'wx.login failed'))
        });
    });
}
function callCloudFunction(wx, name) {
    return new Promise((resolve, reject) => {
        if (!wx.cloud || typeof wx.cloud.callFunction !== 'function') {
            reject(new errors_1.IdentityError('wechat_api_failed', 0, 'wx.cloud is missing: call wx.cloud.init() first'));
            return;
        }
        wx.cloud.callFunction({
            name,
            success: (res) => resolve(res && res.result),
            fail: (err) => reject(new errors_1.IdentityError('wechat_login_failed', 0, (err && err.errMsg) || 'the cloud function failed'))
        });
    });
}
function getUserProfile(wx, desc) {
    return new Promise((resolve, reject) => {
        if (typeof wx.getUserProfile !== 'function') {
            reject(new errors_1.IdentityError('wechat_api_failed', 0, 'wx.getUserProfile needs base library 2.10.4 or later'));
            return;
        }
        wx.getUserProfile({
            desc,
            success: resolve,
            fail: (err) => {
                const errMsg = (err && err.errMsg) || 'wx.getUserProfile failed';
                const refused = /deny|cancel/.test(errMsg);
                reject(new errors_1.IdentityError(refused ? 'user_denied' : 'wechat_api_failed', 0, errMsg));
            }
        });
    });
}
