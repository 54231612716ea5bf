// Private to the built-in callbacks (no public header includes it): Python's str.format,
// format(value, spec) and repr for ints and floats, so that checkpoint filename templates
// ("{epoch:02d}-{val_loss:.2f}") give Lightning's names and the callbacks' messages print numbers
// as Lightning's do. Covers the format-spec mini-language
// ([[fill]align][sign][z][#][0][width][,|_][.precision][type]) for int and float values; strings,
// attribute access and positional arguments are outside its scope.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ember/runtime/api.h"

namespace ember::py {

// A number as Python sees it: an int or a float (a double).
struct Number {
  bool is_int = true;
  int64_t i = 0;
  double f = 0.0;
  static Number of_int(int64_t v) { return Number{true, v, 0.0}; }
  static Number of_float(double v) { return Number{false, 0, v}; }
};

// repr(float): the shortest round-trip digits, scientific below 1e-4 and from 1e16 on ("1e-05").
EMBER_API std::string float_repr(double v);
// repr(str) for plain text: single quotes unless the text holds ' and no ", escapes \\ and controls.
EMBER_API std::string str_repr(std::string_view s);
// format(value, spec); throws ember::Error with Python's ValueError text ("Unknown format code 'd'
// for object of type 'float'", "Invalid format specifier ...", ...) prefixed by "[pyformat] ".
EMBER_API std::string format_number(const Number& value, std::string_view spec);

// Looks up the key of a replacement field "{0[key]...}"; throws when the key is unknown.
using FieldLookup = std::function<Number(const std::string& key)>;
// fmt.format(mapping) where every replacement field has the form {0[key]}, {0[key]:spec} or
// {0[key]!conv:spec} (the form Lightning rewrites filename templates into); "{{" and "}}" are
// literal braces and specs may nest fields ("{0[a]:{0[w]}}"). Throws with Python's error text.
EMBER_API std::string format_indexed(std::string_view fmt, const FieldLookup& lookup);

}  // namespace ember::py
