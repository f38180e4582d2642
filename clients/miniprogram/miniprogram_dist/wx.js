"use strict";
// The few `wx` APIs the SDK uses, callback style as base library 2.10.4 offers them (newer
// libraries also return promises; we never rely on it). Tests and the end-to-end runner pass
// their own object of this shape; in a mini-program it is the global `wx`.
Object.defineProperty(exports, "__esModule", { value: true });
exports.globalWx = globalWx;
/** The global `wx`, looked up only when no stand-in was given (there is none under Node). */
function globalWx() {
    if (typeof wx === 'undefined') {
        throw new Error('identityd-miniprogram: no global wx here; pass { wx } to IdentityClient');
    }
    return wx;
}
