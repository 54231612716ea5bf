// Python number formatting, ported from CPython 3.11's Objects/stringlib/unicode_format.h,
// Python/formatter_unicode.c and Python/pystrtod.c (format_float_short). The decimal digits that
// CPython gets from dtoa come from std::to_chars here (also exact and correctly rounded).
#include "train/callbacks_pyformat.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

#include "ember/runtime/error.h"

namespace ember::py {
namespace {

[[noreturn]] void value_error(const std::string& msg) { throw Error("[pyformat] " + msg); }

// --- decimal digits (dtoa's modes) -------------------------------------------------------------

// The value is 0.DIGITS x 10^decpt ("123", decpt 1 is 1.23); digits carry no trailing zeros.
struct Digits {
  std::string digits;
  int decpt = 1;
};

std::string chars(double v, std::chars_format fmt, int precision = -1) {
  // fixed notation of a double needs at most 309 integer digits, plus sign, point and precision
  std::string buf(static_cast<size_t>(400 + std::max(precision, 0)), '\0');
  std::to_chars_result r = precision < 0 ? std::to_chars(buf.data(), buf.data() + buf.size(), v, fmt)
                                         : std::to_chars(buf.data(), buf.data() + buf.size(), v, fmt, precision);
  if (r.ec != std::errc()) value_error("number too large to format");
  buf.resize(static_cast<size_t>(r.ptr - buf.data()));
  return buf;
}

// Splits to_chars' scientific output of a non-negative value ("1.2300e-05") into digits and decpt.
Digits from_scientific(const std::string& s) {
  Digits d;
  size_t e = s.find('e');
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') d.digits += s[i];
  d.decpt = std::stoi(s.substr(e + 1)) + 1;
  while (d.digits.size() > 1 && d.digits.back() == '0') d.digits.pop_back();
  if (d.digits == "0") d.decpt = 1;
  return d;
}

// mode 0: the shortest digits that round-trip.
Digits shortest_digits(double a) { return from_scientific(chars(a, std::chars_format::scientific)); }

// mode 2: `n` significant digits (n >= 1).
Digits significant_digits(double a, int n) {
  return from_scientific(chars(a, std::chars_format::scientific, n - 1));
}

// mode 3: `n` digits after the decimal point; a value that rounds to zero gives no digits and
// decpt -n, as dtoa does.
Digits fixed_digits(double a, int n) {
  Digits d;
  if (a == 0.0) return Digits{"0", 1};
  std::string s = chars(a, std::chars_format::fixed, n);
  size_t dot = s.find('.');
  std::string int_part = s.substr(0, dot);
  d.digits = int_part + (dot == std::string::npos ? "" : s.substr(dot + 1));
  d.decpt = static_cast<int>(int_part.size());
  size_t lead = 0;
  while (lead < d.digits.size() && d.digits[lead] == '0') ++lead;
  d.digits.erase(0, lead);
  d.decpt -= static_cast<int>(lead);
  while (!d.digits.empty() && d.digits.back() == '0') d.digits.pop_back();
  if (d.digits.empty()) d.decpt = -n;
  return d;
}

// CPython's format_float_short: code is one of 'e', 'f', 'g', 'r' (lower case).
std::string format_float_short(double v, char code, int precision, bool add_dot_0, bool alt, bool no_neg_0,
                               bool upper) {
  if (std::isnan(v)) return upper ? "NAN" : "nan";  // never signed
  bool negative = std::signbit(v);
  if (std::isinf(v)) return std::string(negative ? "-" : "") + (upper ? "INF" : "inf");
  double a = std::fabs(v);
  Digits dg;
  switch (code) {
    case 'e': dg = significant_digits(a, precision + 1); precision += 1; break;
    case 'f': dg = fixed_digits(a, precision); break;
    case 'g': if (precision == 0) precision = 1; dg = significant_digits(a, precision); break;
    default: dg = shortest_digits(a); break;  // 'r'
  }
  const std::string& digits = dg.digits;
  int digits_len = static_cast<int>(digits.size());
  int decpt = dg.decpt;
  if (no_neg_0 && negative && (digits_len == 0 || digits == "0")) negative = false;

  int vdigits_end = digits_len;
  bool use_exp = false;
  switch (code) {
    case 'e': use_exp = true; vdigits_end = precision; break;
    case 'f': vdigits_end = decpt + precision; break;
    case 'g':
      if (decpt <= -4 || decpt > (add_dot_0 ? precision - 1 : precision)) use_exp = true;
      if (alt) vdigits_end = precision;
      break;
    default:
      if (decpt <= -4 || decpt > 16) use_exp = true;
      break;
  }
  int exp = 0;
  if (use_exp) {
    exp = decpt - 1;
    decpt = 1;
  }
  int vdigits_start = decpt <= 0 ? decpt - 1 : 0;
  if (!use_exp && add_dot_0) vdigits_end = std::max(vdigits_end, decpt + 1);
  else vdigits_end = std::max(vdigits_end, decpt);

  std::string out;
  if (negative) out += '-';
  if (decpt <= 0) {
    out.append(decpt - vdigits_start, '0');
    out += '.';
    out.append(-decpt, '0');
  } else {
    out.append(-vdigits_start, '0');
  }
  if (0 < decpt && decpt <= digits_len) {
    out.append(digits, 0, decpt);
    out += '.';
    out.append(digits, decpt, std::string::npos);
  } else {
    out += digits;
  }
  if (digits_len < decpt) {
    out.append(decpt - digits_len, '0');
    out += '.';
    out.append(vdigits_end - decpt, '0');
  } else {
    out.append(std::max(0, vdigits_end - digits_len), '0');
  }
  if (out.back() == '.' && !alt) out.pop_back();
  if (use_exp) {
    out += upper ? 'E' : 'e';
    out += exp < 0 ? '-' : '+';
    std::string e = std::to_string(std::abs(exp));
    if (e.size() < 2) e = "0" + e;
    out += e;
  }
  return out;
}

// --- the format-spec mini-language ---------------------------------------------------------------

enum class Sep { None, Comma, Underscore, UnderscoreFour };

struct Spec {
  char fill = ' ';
  char align = '>';
  char sign = 0;
  bool no_neg_0 = false;
  bool alternate = false;
  int64_t width = -1;
  Sep sep = Sep::None;
  int64_t precision = -1;
  char type = 0;
};

bool is_align(char c) { return c == '<' || c == '>' || c == '=' || c == '^'; }

// Reads decimal digits at pos; returns how many were read.
int read_int(std::string_view s, size_t& pos, int64_t& out) {
  int n = 0;
  out = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    if (out > (std::numeric_limits<int64_t>::max() - 9) / 10) value_error("Too many decimal digits in format string");
    out = out * 10 + (s[pos] - '0');
    ++pos;
    ++n;
  }
  return n;
}

Spec parse_spec(std::string_view s, char default_type, const char* type_name) {
  Spec f;
  f.type = default_type;
  size_t pos = 0;
  bool fill_specified = false, align_specified = false;
  if (s.size() >= 2 && is_align(s[1])) {
    f.align = s[1];
    f.fill = s[0];
    fill_specified = align_specified = true;
    pos = 2;
  } else if (!s.empty() && is_align(s[0])) {
    f.align = s[0];
    align_specified = true;
    pos = 1;
  }
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-' || s[pos] == ' ')) f.sign = s[pos++];
  if (pos < s.size() && s[pos] == 'z') { f.no_neg_0 = true; ++pos; }
  if (pos < s.size() && s[pos] == '#') { f.alternate = true; ++pos; }
  if (!fill_specified && pos < s.size() && s[pos] == '0') {
    f.fill = '0';
    if (!align_specified) f.align = '=';
    ++pos;
  }
  if (read_int(s, pos, f.width) == 0) f.width = -1;
  if (pos < s.size() && s[pos] == ',') { f.sep = Sep::Comma; ++pos; }
  if (pos < s.size() && s[pos] == '_') {
    if (f.sep != Sep::None) value_error("Cannot specify both ',' and '_'.");
    f.sep = Sep::Underscore;
    ++pos;
  }
  if (pos < s.size() && s[pos] == ',' && f.sep == Sep::Underscore) value_error("Cannot specify both ',' and '_'.");
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    if (read_int(s, pos, f.precision) == 0) value_error("Format specifier missing precision");
  }
  if (s.size() - pos > 1)
    value_error("Invalid format specifier '" + std::string(s) + "' for object of type '" + type_name + "'");
  if (s.size() - pos == 1) f.type = s[pos];
  if (f.sep != Sep::None) {
    switch (f.type) {
      case 'd': case 'e': case 'f': case 'g': case 'E': case 'G': case '%': case 'F': case 0:
        break;
      case 'b': case 'o': case 'x': case 'X':
        if (f.sep == Sep::Underscore) { f.sep = Sep::UnderscoreFour; break; }
        [[fallthrough]];
      default: {
        std::string t = (f.type > 32 && static_cast<unsigned char>(f.type) < 128)
                            ? std::string(1, f.type)
                            : str_cat("\\x", std::hex, static_cast<int>(static_cast<unsigned char>(f.type)));
        value_error(str_cat("Cannot specify '", f.sep == Sep::Comma ? ',' : '_', "' with '", t, "'."));
      }
    }
  }
  return f;
}

// CPython's _PyUnicode_InsertThousandsGrouping: groups `digits` from the right (group 0: none),
// padding with zeros (and separators) up to min_width.
std::string group_digits(const std::string& digits, int group, const std::string& sep, int64_t min_width) {
  std::string out;
  int64_t remaining = static_cast<int64_t>(digits.size());
  int64_t pos = remaining;
  bool use_sep = false, broken = false;
  auto piece = [&](int64_t l) {
    int64_t n_zeros = std::max<int64_t>(0, l - remaining);
    int64_t n_chars = std::max<int64_t>(0, std::min(remaining, l));
    std::string p(static_cast<size_t>(n_zeros), '0');
    p.append(digits, static_cast<size_t>(pos - n_chars), static_cast<size_t>(n_chars));
    out = p + (use_sep ? sep : "") + out;
    use_sep = true;
    remaining -= n_chars;
    pos -= n_chars;
  };
  if (group > 0) {
    for (;;) {
      int64_t l = std::min<int64_t>(group, std::max<int64_t>(std::max(remaining, min_width), 1));
      piece(l);
      min_width -= l;
      if (remaining <= 0 && min_width <= 0) { broken = true; break; }
      min_width -= static_cast<int64_t>(sep.size());
    }
  }
  if (!broken) piece(std::max<int64_t>(std::max(remaining, min_width), 1));
  return out;
}

// CPython's calc_number_widths + fill_number: lays out sign, prefix, digits (grouped), decimal
// point and remainder within the requested width.
std::string layout_number(const Spec& f, bool negative, const std::string& prefix, const std::string& digits,
                          bool has_decimal, const std::string& remainder, int group, const std::string& sep) {
  std::string sign;
  if (f.sign == '+' || f.sign == ' ') sign.push_back(negative ? '-' : f.sign);
  else if (negative) sign.push_back('-');
  int64_t n_leading = static_cast<int64_t>(sign.size() + prefix.size());
  int64_t n_decimal = has_decimal ? 1 : 0;
  int64_t n_remainder = static_cast<int64_t>(remainder.size());
  int64_t min_width = (f.fill == '0' && f.align == '=') ? f.width - n_leading - n_decimal - n_remainder : 0;
  std::string grouped = digits.empty() ? std::string() : group_digits(digits, group, sep, min_width);
  int64_t n_padding = f.width - (n_leading + n_decimal + n_remainder + static_cast<int64_t>(grouped.size()));
  int64_t lpad = 0, rpad = 0, spad = 0;
  if (n_padding > 0) {
    switch (f.align) {
      case '<': rpad = n_padding; break;
      case '^': lpad = n_padding / 2; rpad = n_padding - lpad; break;
      case '=': spad = n_padding; break;
      default: lpad = n_padding; break;
    }
  }
  std::string out(static_cast<size_t>(lpad), f.fill);
  out += sign;
  out += prefix;
  out.append(static_cast<size_t>(spad), f.fill);
  out += grouped;
  if (has_decimal) out += '.';
  out += remainder;
  out.append(static_cast<size_t>(rpad), f.fill);
  return out;
}

int group_size(Sep s) { return s == Sep::None ? 0 : s == Sep::UnderscoreFour ? 4 : 3; }
std::string sep_text(Sep s) { return s == Sep::Comma ? "," : s == Sep::None ? "" : "_"; }

[[noreturn]] void unknown_code(char type, const char* type_name) {
  std::string t = (type > 32 && static_cast<unsigned char>(type) < 128)
                      ? std::string(1, type)
                      : str_cat("\\x", std::hex, static_cast<int>(static_cast<unsigned char>(type)));
  value_error("Unknown format code '" + t + "' for object of type '" + type_name + "'");
}

std::string format_float_spec(double v, const Spec& f) {
  char type = f.type;
  int64_t precision = f.precision;
  int default_precision = 6;
  bool add_dot_0 = false, add_pct = false;
  if (type == 0) {
    add_dot_0 = true;
    type = 'r';
    default_precision = 0;
  }
  if (type == 'n') type = 'g';
  if (type == '%') {
    type = 'f';
    v *= 100;
    add_pct = true;
  }
  if (precision < 0) precision = default_precision;
  else if (type == 'r') type = 'g';
  if (precision > std::numeric_limits<int>::max()) value_error("precision too big");
  bool upper = type == 'E' || type == 'F' || type == 'G';
  char code = static_cast<char>(type == 'r' ? 'r' : (type | 0x20));
  std::string s = format_float_short(v, code, static_cast<int>(precision), add_dot_0, f.alternate, f.no_neg_0, upper);
  if (add_pct) s += '%';
  bool negative = !s.empty() && s[0] == '-';
  size_t i = negative ? 1 : 0;
  size_t d = i;
  while (d < s.size() && s[d] >= '0' && s[d] <= '9') ++d;
  std::string digits = s.substr(i, d - i);
  bool has_decimal = d < s.size() && s[d] == '.';
  std::string remainder = s.substr(has_decimal ? d + 1 : d);
  Sep sep = f.type == 'n' ? Sep::None : f.sep;
  return layout_number(f, negative, "", digits, has_decimal, remainder, group_size(sep), sep_text(sep));
}

std::string format_int_spec(int64_t v, const Spec& f) {
  if (f.precision != -1) value_error("Precision not allowed in integer format specifier");
  if (f.no_neg_0) value_error("Negative zero coercion (z) not allowed in integer format specifier");
  bool negative = v < 0;
  uint64_t mag = negative ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  if (f.type == 'c') {
    if (f.sign != 0) value_error("Sign not allowed with integer format specifier 'c'");
    if (f.alternate) value_error("Alternate form (#) not allowed with integer format specifier 'c'");
    if (negative || mag > 0x7f) value_error("%c arg not in range(0x80) (Ember formats ASCII characters only)");
    Spec g = f;
    std::string ch(1, static_cast<char>(mag));
    return layout_number(g, false, "", "", false, ch, 0, "");
  }
  int base = 10;
  std::string prefix;
  switch (f.type) {
    case 'b': base = 2; prefix = "0b"; break;
    case 'o': base = 8; prefix = "0o"; break;
    case 'x': base = 16; prefix = "0x"; break;
    case 'X': base = 16; prefix = "0X"; break;
    default: break;
  }
  if (!f.alternate) prefix.clear();
  char buf[80];
  auto r = std::to_chars(buf, buf + sizeof buf, mag, base);
  std::string digits(buf, r.ptr);
  if (f.type == 'X') std::transform(digits.begin(), digits.end(), digits.begin(), ::toupper);
  Sep sep = f.type == 'n' ? Sep::None : f.sep;
  return layout_number(f, negative, prefix, digits, false, "", group_size(sep), sep_text(sep));
}

}  // namespace

std::string float_repr(double v) { return format_float_short(v, 'r', 0, true, false, false, false); }

std::string str_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') { out += '\\'; out += c; }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (u < 0x20 || u == 0x7f) {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

std::string format_number(const Number& value, std::string_view spec) {
  if (value.is_int) {
    if (spec.empty()) return std::to_string(value.i);
    Spec f = parse_spec(spec, 'd', "int");
    switch (f.type) {
      case 'b': case 'c': case 'd': case 'o': case 'x': case 'X': case 'n':
        return format_int_spec(value.i, f);
      case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': case '%':
        return format_float_spec(static_cast<double>(value.i), f);
      default:
        unknown_code(f.type, "int");
    }
  }
  if (spec.empty()) return float_repr(value.f);
  Spec f = parse_spec(spec, 0, "float");
  switch (f.type) {
    case 0: case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': case 'n': case '%':
      return format_float_spec(value.f, f);
    default:
      unknown_code(f.type, "float");
  }
}

namespace {

std::string format_rec(std::string_view fmt, const FieldLookup& lookup, int depth);

// One replacement field's text between the braces: field_name[!conv][:spec].
std::string render_field(std::string_view field, const FieldLookup& lookup, int depth) {
  size_t pos = 0;
  // field name: up to ':' or '!' (brackets skipped), '{' is an error
  while (pos < field.size()) {
    char c = field[pos++];
    if (c == '{') value_error("unexpected '{' in field name");
    if (c == '[') {
      while (pos < field.size() && field[pos] != ']') ++pos;
      continue;
    }
    if (c == ':' || c == '!') { --pos; break; }
  }
  std::string_view name = field.substr(0, pos);
  std::string_view spec;
  if (pos < field.size() && field[pos] == '!') {
    if (pos + 1 >= field.size()) value_error("end of string while looking for conversion specifier");
    if (pos + 2 < field.size() && field[pos + 2] != ':') value_error("expected ':' after conversion specifier");
    value_error(str_cat("conversion '!", field[pos + 1], "' in field '{", field, "}' is not supported"));
  }
  if (pos < field.size() && field[pos] == ':') spec = field.substr(pos + 1);

  // name: "0" then one [key]
  size_t first_end = name.find_first_of(".[");
  std::string_view first = name.substr(0, first_end);
  if (first != "0" || first_end == std::string_view::npos || name[first_end] != '[')
    value_error("unsupported replacement field '{" + std::string(field) + "}' (Ember formats {0[key]} fields only)");
  size_t close = name.find(']', first_end);
  if (close == std::string_view::npos) value_error("Missing ']' in format string");
  std::string key(name.substr(first_end + 1, close - first_end - 1));
  if (key.empty()) value_error("Empty attribute in format string");
  if (close + 1 < name.size()) {
    char next = name[close + 1];
    if (next != '.' && next != '[') value_error("Only '.' or '[' may follow ']' in format field specifier");
    value_error("unsupported replacement field '{" + std::string(field) + "}' (Ember formats {0[key]} fields only)");
  }
  if (std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
    value_error("KeyError: " + std::to_string(std::stoll(key)));  // Python indexes with the int
  Number v = lookup(key);
  std::string expanded = spec.find('{') != std::string_view::npos ? format_rec(spec, lookup, depth - 1) : std::string(spec);
  return format_number(v, expanded);
}

std::string format_rec(std::string_view fmt, const FieldLookup& lookup, int depth) {
  if (depth <= 0) value_error("Max string recursion exceeded");
  std::string out;
  size_t i = 0;
  while (i < fmt.size()) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') { out += '}'; i += 2; continue; }
      value_error("Single '}' encountered in format string");
    }
    if (c != '{') { out += c; ++i; continue; }
    if (i + 1 >= fmt.size()) value_error("Single '{' encountered in format string");
    if (fmt[i + 1] == '{') { out += '{'; i += 2; continue; }
    // find the matching '}' counting nested braces
    size_t start = i + 1, j = start;
    int count = 1;
    bool hit_spec = false;
    for (; j < fmt.size(); ++j) {
      char d = fmt[j];
      if (d == '[' && !hit_spec) {
        while (j < fmt.size() && fmt[j] != ']') ++j;
        if (j >= fmt.size()) break;
        continue;
      }
      if (d == ':') hit_spec = true;
      else if (d == '{') ++count;
      else if (d == '}' && --count == 0) break;
    }
    if (j >= fmt.size()) value_error("expected '}' before end of string");
    out += render_field(fmt.substr(start, j - start), lookup, depth);
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string format_indexed(std::string_view fmt, const FieldLookup& lookup) { return format_rec(fmt, lookup, 2); }

}  // namespace ember::py
