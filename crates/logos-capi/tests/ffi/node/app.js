// The RFC's application sequence from Node.js, through the koffi FFI package.
//
// Usage: node app.js LIBLOGOS_CORE_SO MODULES_DIR LOGOS_HOST
//
// Initializes with logos_core_init(0, null) as the RFC's Node example does, sets the plugins
// dir and the host binary, starts the core, loads chat, calls chat.send asynchronously with a JS
// callback, receives the chatMessage event by pumping logos_core_process_events() from a timer,
// makes a synchronous call, unloads chat and cleans up. Prints "pid <module> <pid>" for each
// module process and "PASS" at the end; exits 1 with a message on the first failed check.
'use strict';

const koffi = require('koffi');

const [libPath, modules, host] = process.argv.slice(2);
const lib = koffi.load(libPath);

const AsyncCallback = koffi.proto(
  'void AsyncCallback(int result, const char *message, void *user_data)'
);
const freeString = lib.func('void logos_core_free_string(void *s)');
// Owned strings: koffi copies them into JS strings, then releases them with our free.
koffi.disposable('OwnedStr', 'const char *', freeString);

const api = {
  init: lib.func('int logos_core_init(int argc, void *argv)'),
  setPluginsDir: lib.func('int logos_core_set_plugins_dir(const char *dir)'),
  setHostBinary: lib.func('int logos_core_set_host_binary(const char *path)'),
  start: lib.func('int logos_core_start(void)'),
  cleanup: lib.func('void logos_core_cleanup(void)'),
  getLoadedPlugins: lib.func('void *logos_core_get_loaded_plugins(void)'),
  getKnownPlugins: lib.func('void *logos_core_get_known_plugins(void)'),
  freeList: lib.func('void logos_core_free_list(void *list)'),
  loadPlugin: lib.func('int logos_core_load_plugin(const char *name)'),
  unloadPlugin: lib.func('int logos_core_unload_plugin(const char *name)'),
  callAsync: lib.func(
    'int logos_core_call_plugin_method_async(const char *plugin, const char *method, ' +
      'const char *params, AsyncCallback *cb, void *user_data)'
  ),
  call: lib.func(
    'OwnedStr logos_core_call_plugin_method(const char *plugin, const char *method, ' +
      'const char *params, int timeout_ms)'
  ),
  listen: lib.func(
    'int logos_core_register_event_listener(const char *plugin, const char *event, ' +
      'AsyncCallback *cb, void *user_data)'
  ),
  processEvents: lib.func('int logos_core_process_events(void)'),
  lastError: lib.func('const char *logos_core_last_error(void)'),
};

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what} (last error: ${api.lastError()})`);
    process.exit(1);
  }
}

// A NULL-terminated char** as a JS array; the list is released.
function names(list) {
  check(list !== null, 'a list came back NULL');
  const out = [];
  for (let i = 0; ; i++) {
    const s = koffi.decode(list, i * koffi.sizeof('void *'), 'const char *');
    if (s === null) break;
    out.push(s);
  }
  api.freeList(list);
  return out;
}

function callSync(plugin, method, params) {
  const text = api.call(plugin, method, JSON.stringify(params), 5000);
  check(text !== null, `${plugin}.${method}`);
  return JSON.parse(text);
}

// Pumps callbacks from a timer, as the RFC suggests, until cond() holds or 10 s pass.
function pumpUntil(cond) {
  return new Promise((resolve) => {
    const deadline = Date.now() + 10000;
    const timer = setInterval(() => {
      api.processEvents();
      if (cond() || Date.now() > deadline) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
}

async function main() {
  check(api.init(0, null) === 1, 'init');
  check(api.setPluginsDir(modules) === 1, 'set_plugins_dir');
  check(api.setHostBinary(host) === 1, 'set_host_binary');
  check(api.start() === 1, 'start');
  check(names(api.getKnownPlugins()).includes('chat'), 'chat is known');
  check(api.loadPlugin('chat') === 1, 'load chat');
  check(JSON.stringify(names(api.getLoadedPlugins())) === '["chat"]', 'loaded');
  const chatPid = callSync('core', 'moduleInfo', ['chat']).pid;
  console.log(`pid chat ${chatPid}`);

  const results = [];
  const events = [];
  const onResult = koffi.register(
    (result, message) => results.push([result, message]),
    koffi.pointer(AsyncCallback)
  );
  const onEvent = koffi.register(
    (result, message) => events.push([result, JSON.parse(message)]),
    koffi.pointer(AsyncCallback)
  );

  check(api.listen('chat', 'chatMessage', onEvent, null) === 1, 'listener');
  const params = [
    { name: 'nick', value: 'node', type: 'string' },
    { name: 'message', value: 'hello from Node', type: 'string' },
  ];
  check(api.callAsync('chat', 'send', JSON.stringify(params), onResult, null) === 1, 'call');
  // Once chat's history holds the message, send has run and chat has answered it (before the
  // history call that saw it), and still no callback has run.
  const deadline = Date.now() + 10000;
  while (!callSync('chat', 'history', []).some((m) => m.message === 'hello from Node')) {
    check(Date.now() < deadline, 'chat never got the message');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  check(results.length === 0 && events.length === 0, 'a callback ran outside process_events');
  await pumpUntil(() => results.length > 0 && events.length > 0);
  check(JSON.stringify(results) === '[[1,"null"]]', `send result ${JSON.stringify(results)}`);
  check(events.length === 1 && events[0][0] === 1, `events ${JSON.stringify(events)}`);
  const event = events[0][1];
  check(
    event.event === 'chatMessage' &&
      JSON.stringify(event.data.slice(1)) === '["node","hello from Node"]',
    `event ${JSON.stringify(event)}`
  );
  console.log('event', JSON.stringify(event));

  results.length = 0;
  check(api.callAsync('chat', 'nope', '[]', onResult, null) === 1, 'call nope');
  await pumpUntil(() => results.length > 0);
  check(
    results.length === 1 && results[0][0] === 0 && results[0][1].startsWith('unknown_method: '),
    `unknown method ${JSON.stringify(results)}`
  );

  const history = callSync('chat', 'history', []);
  check(
    JSON.stringify(history.map((m) => m.message)) === '["hello from Node"]',
    `history ${JSON.stringify(history)}`
  );

  check(api.unloadPlugin('chat') === 1, 'unload chat');
  check(names(api.getLoadedPlugins()).length === 0, 'still loaded');
  check(api.loadPlugin('chat') === 1, 'load chat again');
  const pid = callSync('core', 'moduleInfo', ['chat']).pid;
  console.log(`pid chat ${pid}`);
  api.cleanup();
  let alive = true;
  try {
    process.kill(pid, 0);
  } catch (e) {
    alive = e.code !== 'ESRCH';
  }
  check(!alive, `chat ${pid} outlived cleanup`);
  check(api.loadPlugin('chat') === 0, 'load after cleanup');
  check(api.lastError().startsWith('unavailable: '), 'code after cleanup');
  koffi.unregister(onResult);
  koffi.unregister(onEvent);
  console.log('PASS');
}

main().catch((e) => {
  console.error('FAIL:', e);
  process.exit(1);
});
