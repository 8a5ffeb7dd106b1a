{
  "targets": [
    {
      "target_name": "myproxy_native",
      "sources": [
        "native/myproxy_native.c",
        "native/napi-util.c",
        "native/pump.c",
        "native/sockets.c",
        "native/tracker.c",
        "native/tracker-binding.c"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_c": ["-std=gnu11"],
      "cflags!": ["-O3"]
    }
  ]
}
