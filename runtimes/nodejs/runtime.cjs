'use strict';
/*
 * runtime.cjs - spate's runtime client for Node.js handlers: it speaks the
 * AWS Lambda Runtime API to spated (AWS_LAMBDA_RUNTIME_API) and runs the
 * handler named by _HANDLER from LAMBDA_TASK_ROOT the way Lambda's own
 * Node.js runtime does (CommonJS and ES modules, async, promise and
 * callback handlers, the context object, console lines carrying the
 * request id, errors as {errorType, errorMessage, stackTrace}).
 *
 * Standard library only, for the system's /usr/bin/node (20): spate ships
 * this file, the function's zip brings only its own code and node_modules.
 *
 *   node runtime.cjs                      the Runtime API loop
 *   node runtime.cjs --check [ROOT HANDLER]
 *                                         exit 0 if the handler loads and is a
 *                                         function, else print why and exit 1
 *
 * It is CommonJS on purpose: a CommonJS entry starts faster than an ES
 * module one, and import() still loads ES module handlers.
 */

const fs = require('fs');
const path = require('path');
const util = require('util');

const API_PREFIX = '/2018-06-01/runtime';
/* Loading the handler may not take longer than Lambda's init phase. */
const INIT_LIMIT_MS = 10000;
/* spated refuses larger answers; reading more of /next is a broken peer. */
const EVENT_MAX = 6 * 1024 * 1024 + 64 * 1024;

/* ---- errors, shaped as Lambda's Node.js runtime shapes them ---------------- */

function runtimeError(name, message, cause) {
    const e = new Error(message);
    e.name = 'Runtime.' + name;
    if (cause && cause.stack) e.stack = e.name + ': ' + message + '\n' + String(cause.stack);
    return e;
}

function isErrorLike(v) {
    return v && typeof v === 'object' && typeof v.name === 'string' &&
        typeof v.message === 'string' && typeof v.stack === 'string';
}

/* What /error and /init/error receive. Lambda's Node runtime names the
 * stack "trace"; spate's contract (and Lambda's other runtimes) say
 * "stackTrace": both are sent. */
function errorDocument(err) {
    try {
        if (util.types.isNativeError(err) || isErrorLike(err)) {
            const trace = String(err.stack || '').split('\n');
            return {errorType: String(err.name || 'Error'), errorMessage: String(err.message),
                    stackTrace: trace, trace};
        }
        if (err === undefined || err === null) err = 'handled';
        const message = typeof err === 'string' ? err : safeJson(err) || String(err);
        return {errorType: typeof err === 'string' ? 'string' : typeof err, errorMessage: message,
                stackTrace: [], trace: []};
    } catch (_) {
        return {errorType: 'handled', errorMessage: 'the handler failed with a value that cannot be read',
                stackTrace: [], trace: []};
    }
}

function safeJson(v) {
    try {
        return JSON.stringify(v);
    } catch (_) {
        return undefined;
    }
}

/* ---- console: Lambda's text format ----------------------------------------- */

let currentRequestId; /* undefined outside an invocation, as in Lambda */

/* "TIME\tREQUEST-ID\tLEVEL\tmessage", one line per call: a message's own
 * line breaks become \r, as Lambda does, so that a stack trace stays one
 * log entry. stdout to a pipe or a file is synchronous on Linux, so lines
 * are out before the answer that follows them. */
function patchConsole() {
    const levels = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
    const wanted = levels.indexOf(String(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase());
    const min = wanted < 0 ? 0 : wanted;
    const logger = (level) => (message, ...params) => {
        const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t` +
            util.format(message, ...params);
        process.stdout.write(line.replace(/\n/g, '\r') + '\n');
    };
    const nop = () => {};
    const at = (level) => (levels.indexOf(level) >= min ? logger(level) : nop);
    console.trace = at('TRACE');
    console.debug = at('DEBUG');
    console.info = at('INFO');
    console.log = console.info;
    console.warn = at('WARN');
    console.error = at('ERROR');
    console.fatal = logger('FATAL');
}

/* ---- loading the handler, as Lambda's UserFunction.js ---------------------- */

function hasTypeModule(dir) {
    for (;;) {
        if (dir.endsWith('/node_modules')) return false;
        const pj = path.join(dir, 'package.json');
        if (fs.existsSync(pj)) {
            try {
                return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
            } catch (e) {
                console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
                return false;
            }
        }
        const up = path.dirname(dir);
        if (up === dir) return false;
        dir = up;
    }
}

async function importFile(file) {
    const {pathToFileURL} = require('url');
    return import(pathToFileURL(file).href);
}

function exists(file) {
    try {
        return fs.statSync(file).isFile();
    } catch (_) {
        return false;
    }
}

/* The module of "dir/module": an extensionless file, .js (CommonJS unless
 * a package.json says "type":"module"), .mjs, .cjs, then Node's own
 * resolution from the task root (a handler inside node_modules). */
async function loadModule(root, moduleRoot, name) {
    const base = path.resolve(root, moduleRoot, name);
    if (exists(base)) return require(base);
    const esm = exists(base + '.js') && hasTypeModule(path.dirname(base + '.js'));
    if (exists(base + '.js')) return esm ? importFile(base + '.js') : require(base + '.js');
    if (exists(base + '.mjs')) return importFile(base + '.mjs');
    if (exists(base + '.cjs')) return require(base + '.cjs');
    return require(require.resolve(name, {paths: [root, path.resolve(root, moduleRoot)]}));
}

/* Resolves to the handler function, or rejects with a Runtime.* error
 * whose message says what is wrong. */
async function loadHandler(root, handler) {
    if (!handler) throw runtimeError('MalformedHandlerName', 'no handler given (_HANDLER is empty)');
    if (handler.includes('..'))
        throw runtimeError('MalformedHandlerName', `'${handler}' is not a valid handler name. ` +
            'Use absolute paths when specifying root directories in handler names.');
    const file = path.basename(handler);
    const moduleRoot = handler.substring(0, handler.length - file.length);
    const m = /^([^.]*)\.(.*)$/.exec(file);
    if (!m) throw runtimeError('MalformedHandlerName', `'${handler}' is not MODULE.FUNCTION`);
    /* Lambda's global for response streaming, which spate does not have:
     * a handler that asks for it fails to load and says why. */
    globalThis.awslambda = {
        streamifyResponse() {
            throw runtimeError('MalformedStreamingHandler', 'response streaming is not supported by spate yet');
        },
    };
    let mod;
    try {
        mod = await loadModule(root, moduleRoot, m[1]);
    } catch (e) {
        if (e instanceof SyntaxError) throw runtimeError('UserCodeSyntaxError', String(e), e);
        if (e && e.code === 'MODULE_NOT_FOUND') throw runtimeError('ImportModuleError', String(e), e);
        throw e;
    }
    const fn = m[2].split('.').reduce((o, key) => o && o[key], mod);
    if (!fn) throw runtimeError('HandlerNotFound', `${handler} is undefined or not exported`);
    if (typeof fn !== 'function') throw runtimeError('HandlerNotFound', `${handler} is not a function`);
    return fn;
}

/* ---- the Runtime API ------------------------------------------------------- */

class RuntimeApi {
    constructor(address) {
        const http = require('http');
        const colon = address.lastIndexOf(':');
        if (!address || colon < 1) throw new Error(`AWS_LAMBDA_RUNTIME_API is not HOST:PORT: '${address}'`);
        this.http = http;
        this.host = address.substring(0, colon);
        this.port = Number(address.substring(colon + 1));
        /* One kept-alive connection: an idle kept-alive socket is unref'd by
         * the agent, so it does not hold the event loop (which
         * callbackWaitsForEmptyEventLoop watches). */
        this.agent = new http.Agent({keepAlive: true, maxSockets: 1});
    }

    request(method, route, body, headers, callback) {
        let called = false; /* a destroyed request may say so on both ends */
        const done = (...args) => {
            if (!called) {
                called = true;
                callback(...args);
            }
        };
        const req = this.http.request({host: this.host, port: this.port, method, path: API_PREFIX + route,
                                       agent: this.agent, headers}, (res) => {
            const chunks = [];
            let size = 0;
            res.on('data', (c) => {
                size += c.length;
                if (size > EVENT_MAX) {
                    req.destroy(new Error(`the answer of ${route} is over ${EVENT_MAX} bytes`));
                    return;
                }
                chunks.push(c);
            });
            res.on('end', () => done(null, res, Buffer.concat(chunks)));
            res.on('error', done);
        });
        req.on('error', done);
        req.end(body);
    }

    next(done) {
        this.request('GET', '/invocation/next', undefined, undefined, (err, res, body) => {
            if (!err && res.statusCode !== 200)
                err = new Error(`/invocation/next answered ${res.statusCode}: ${body.toString().slice(0, 200)}`);
            done(err, res && res.headers, body);
        });
    }

    post(route, text, extra, done) {
        const body = Buffer.from(text, 'utf8');
        const headers = Object.assign({'Content-Type': 'application/json', 'Content-Length': body.length}, extra);
        this.request('POST', route, body, headers, (err, res, answer) => {
            /* A refused answer (too large, or the invocation is no longer
             * ours) is spated's to report to the caller; the loop goes on. */
            if (!err && res.statusCode >= 300)
                process.stderr.write(`spate runtime: ${route} answered ${res.statusCode}: ` +
                    `${answer.toString().slice(0, 300)}\n`);
            done(err);
        });
    }

    postError(route, err, done) {
        const doc = errorDocument(err);
        this.post(route, JSON.stringify(doc), {'Lambda-Runtime-Function-Error-Type': doc.errorType}, done);
    }
}

/* ---- the invocation loop --------------------------------------------------- */

/* What runs when the event loop empties: callback-style handlers answer
 * then (callbackWaitsForEmptyEventLoop), and a handler that neither
 * returns a promise nor calls back answers null then. */
let beforeExit = () => {};

function fatal(message) {
    process.stderr.write(`spate runtime: ${message}\n`);
    process.exit(1);
}

function staticContext() {
    const env = process.env;
    const name = env.AWS_LAMBDA_FUNCTION_NAME || '';
    const version = env.AWS_LAMBDA_FUNCTION_VERSION || '$LATEST';
    const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
    const rand = require('crypto').randomBytes(16).toString('hex');
    return {
        functionName: name,
        functionVersion: version,
        memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME || `/aws/lambda/${name}`,
        logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME || `${day}/[${version}]${rand}`,
    };
}

function parseHeaderJson(value, what) {
    if (value === undefined) return undefined;
    try {
        return JSON.parse(value);
    } catch (e) {
        throw new Error(`cannot parse ${what} as json: ${e}`);
    }
}

class Runtime {
    constructor(api, handler) {
        this.api = api;
        this.handler = handler;
        this.fixed = staticContext();
        this.invokeId = undefined;
    }

    schedule() {
        setImmediate(() => this.api.next((err, headers, body) => {
            if (err) fatal(`cannot get the next invocation: ${err.message}`);
            this.run(headers, body);
        }));
    }

    /* Posts the answer once; then the next invocation. */
    answer(id, isError, value) {
        beforeExit = () => {};
        if (this.invokeId !== id) return; /* already answered */
        this.invokeId = undefined;
        const after = (err) => {
            if (err) fatal(`cannot post the answer of ${id}: ${err.message}`);
            this.schedule();
        };
        const route = `/invocation/${encodeURIComponent(id)}/`;
        if (isError) {
            console.error('Invoke Error', '\t' + (safeJson(errorDocument(value)) || String(value)));
            this.api.postError(route + 'error', value, after);
            return;
        }
        let text;
        try {
            text = JSON.stringify(value === undefined ? null : value);
        } catch (e) {
            const err = runtimeError('SerializationError', `the handler's result cannot be encoded as JSON: ${e.message}`);
            this.api.postError(route + 'error', err, after);
            return;
        }
        this.api.post(route + 'response', text === undefined ? 'null' : text, {}, after);
    }

    run(headers, body) {
        const id = headers['lambda-runtime-aws-request-id'];
        if (!id) fatal('/invocation/next gave no Lambda-Runtime-Aws-Request-Id');
        this.invokeId = id;
        currentRequestId = id;
        if (headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
        else delete process.env._X_AMZN_TRACE_ID;

        let waitForEmptyLoop = true;
        let finished = false;
        const done = (err, result) => {
            if (finished) return;
            finished = true;
            if (err !== undefined && err !== null) this.answer(id, true, err);
            else this.answer(id, false, result);
        };
        const callback = (err, result) => {
            if (finished) return;
            if ((err === undefined || err === null) && waitForEmptyLoop) {
                /* Lambda's documented default: the answer waits until the
                 * handler's timers, sockets and callbacks are done. */
                beforeExit = () => setImmediate(() => done(null, result));
                return;
            }
            done(err, result);
        };
        const deadline = Number(headers['lambda-runtime-deadline-ms']);
        /* A literal, not Object.assign: that would copy the flag's value and
         * drop its setter. */
        const context = {
            ...this.fixed,
            awsRequestId: id,
            invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
            getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
            get callbackWaitsForEmptyEventLoop() {
                return waitForEmptyLoop;
            },
            set callbackWaitsForEmptyEventLoop(v) {
                waitForEmptyLoop = v;
            },
            succeed: (result) => done(null, result),
            fail: (err) => done(err === undefined || err === null ? 'handled' : err),
            done: (err, result) => done(err, result),
        };
        /* A handler that neither returns a promise nor calls back: null once
         * the loop is empty. */
        beforeExit = () => done(null, null);
        try {
            context.clientContext = parseHeaderJson(headers['lambda-runtime-client-context'], 'client context');
            context.identity = parseHeaderJson(headers['lambda-runtime-cognito-identity'], 'cognito identity');
            const event = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
            const result = this.handler(event, context, callback);
            if (result && typeof result.then === 'function')
                result.then((v) => done(null, v), (e) => done(e === undefined || e === null ? 'handled' : e));
        } catch (e) {
            done(e);
        }
    }
}

/* After a crash outside any handler's reach (an exception thrown from a
 * timer, a rejection nobody handles) the process state is unknown: the
 * error goes to the invocation in progress (or to /init/error) and the
 * process ends, as in Lambda; spated starts a fresh instance. */
function crashHandlers(api, runtime) {
    const crash = (kind, code) => (err) => {
        console.error(kind, '\t' + (safeJson(errorDocument(err)) || String(err)));
        const id = runtime.invokeId;
        runtime.invokeId = undefined;
        /* Between invocations (a timer an earlier one left) nobody waits
         * for the error: the log has it. */
        if (!id && runtime.handler) process.exit(code);
        const route = id ? `/invocation/${encodeURIComponent(id)}/error` : '/init/error';
        api.postError(route, err, () => process.exit(code));
    };
    process.on('uncaughtException', crash('Uncaught Exception', 129));
    process.on('unhandledRejection', (reason) => {
        const err = reason instanceof Error ? reason : new Error(String(reason));
        if (!(reason instanceof Error)) err.name = 'Runtime.UnhandledPromiseRejection';
        crash('Unhandled Promise Rejection', 128)(err);
    });
}

async function main() {
    const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
    const handlerName = process.env._HANDLER || '';
    patchConsole();
    let api;
    try {
        api = new RuntimeApi(process.env.AWS_LAMBDA_RUNTIME_API || '');
    } catch (e) {
        fatal(e.message);
    }
    const runtime = new Runtime(api, null);
    crashHandlers(api, runtime);
    process.on('beforeExit', () => beforeExit());
    const limit = setTimeout(() => {}, INIT_LIMIT_MS); /* holds the loop while a top-level await waits */
    let handler;
    try {
        handler = await loadHandler(root, handlerName);
    } catch (e) {
        clearTimeout(limit);
        console.error('Init Error', '\t' + (safeJson(errorDocument(e)) || String(e)));
        api.postError('/init/error', e, () => process.exit(129));
        return;
    }
    clearTimeout(limit);
    runtime.handler = handler;
    runtime.schedule();
}

/* --check: loads the handler as an instance would, without the Runtime API;
 * the deploy step runs it to refuse a handler that cannot work. */
async function check(args) {
    const root = args[0] || process.env.LAMBDA_TASK_ROOT || process.cwd();
    const handlerName = args[1] || process.env._HANDLER || '';
    /* The handler's own output at import must not mix with the verdict. */
    for (const m of ['log', 'info', 'debug', 'trace', 'warn', 'error']) console[m] = () => {};
    const limit = setTimeout(() => {
        process.stderr.write(`Runtime.InitTimeout: ${handlerName} did not finish loading in ${INIT_LIMIT_MS / 1000} s\n`);
        process.exit(1);
    }, INIT_LIMIT_MS);
    process.on('exit', (code) => {
        if (code === 0 && !check.ok) {
            process.stderr.write(`Runtime.InitError: ${handlerName} never finished loading\n`);
            process.exitCode = 1;
        }
    });
    try {
        await loadHandler(root, handlerName);
    } catch (e) {
        const doc = errorDocument(e);
        process.stderr.write(`${doc.errorType}: ${doc.errorMessage}\n`);
        process.exit(1);
    }
    clearTimeout(limit);
    check.ok = true;
    process.exit(0);
}

function start(args) {
    if (args[0] === '--check') check(args.slice(1));
    else if (args.length > 0) fatal(`unknown argument '${args[0]}' (usage: bootstrap [--check [ROOT HANDLER]])`);
    else main();
}

/* A startup snapshot of this client (node --build-snapshot) was measured
 * and is not used: it saves nothing measurable, since Node's own start is
 * already a snapshot and http cannot be in a user snapshot in Node 20
 * (bench/coldstart-node builds one and compares). */
start(process.argv.slice(2));
