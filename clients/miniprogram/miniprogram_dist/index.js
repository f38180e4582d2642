"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.IdentityError = exports.IdentityClient = void 0;
// identityd-miniprogram: the mini-program side of identityd. See README.md.
var client_1 = require("./client");
Object.defineProperty(exports, "IdentityClient", { enumerable: true, get: function () { return client_1.IdentityClient; } });
var errors_1 = require("./errors");
Object.defineProperty(exports, "IdentityError", { enumerable: true, get: function () { return errors_1.IdentityError; } });
