/* The native byte pump (pump.c): pumpStart / pumpClose on Node's libuv loop. */
#ifndef MYPROXY_PUMP_H
#define MYPROXY_PUMP_H

#include <stdbool.h>
#include <node_api.h>

bool register_pump(napi_env env, napi_value exports);

#endif
