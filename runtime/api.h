// Symbol export macro: the library is built with hidden visibility; public API is marked EMBER_API.
#pragma once
#if defined(_WIN32)
#define EMBER_API
#else
#define EMBER_API __attribute__((visibility("default")))
#endif
