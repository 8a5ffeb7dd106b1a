{
  "targets": [
    {
      "target_name": "myproxy_native",
      "sources": ["native/myproxy_native.c", "native/pump.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_c": ["-std=gnu11"],
      "cflags!": ["-O3"],
      "xcode_settings": {
        "GCC_OPTIMIZATION_LEVEL": "2",
        "OTHER_CFLAGS": ["-Wall", "-Wextra"]
      }
    }
  ]
}
