// The version of the Ember library a program runs with. With the shared library this can differ
// from the headers it was compiled against (EMBER_VERSION_* in <ember/config.h>); a program that
// needs both to agree compares them at startup.
#pragma once
#include "ember/runtime/api.h"

namespace ember {

struct Version {
  int major = 0;
  int minor = 0;
  int patch = 0;
};

// The library's version, e.g. {0, 1, 0}.
EMBER_API Version version();
// The same as "major.minor.patch", e.g. "0.1.0".
EMBER_API const char* version_string();

}  // namespace ember
