/* The native byte pump (pump.c) and the response tracker's JavaScript binding (tracker-binding.c). */
#ifndef MYPROXY_PUMP_H
#define MYPROXY_PUMP_H

#include <stdbool.h>
#include <node_api.h>

bool register_pump(napi_env env, napi_value exports);
bool register_tracker(napi_env env, napi_value exports);
bool register_sockets(napi_env env, napi_value exports);

#endif
