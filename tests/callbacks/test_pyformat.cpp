// Python str.format port (train/callbacks_pyformat.h) and ModelCheckpoint's filename templates against
// outputs of Python 3.11 and of Lightning's naming steps (tests/reference/gen_pyformat.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "ember/runtime/error.h"
#include "tests/support/check.h"
#include "ember/train/callbacks.h"
#include "train/callbacks_pyformat.h"

namespace ember {
namespace {

std::vector<std::vector<std::string>> read_tsv(const std::string& relpath, size_t columns) {
  std::ifstream in(test::reference_path(relpath));
  EXPECT_TRUE(in.good()) << "cannot open " << relpath;
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    size_t start = 0;
    for (;;) {
      size_t tab = line.find('\t', start);
      cols.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    EXPECT_EQ(cols.size(), columns) << relpath << ": " << line;
    if (cols.size() == columns) rows.push_back(cols);
  }
  return rows;
}

py::Number parse_number(const std::string& kind, const std::string& text) {
  if (kind == "i") return py::Number::of_int(std::stoll(text));
  if (text == "nan") return py::Number::of_float(std::numeric_limits<double>::quiet_NaN());
  if (text == "-nan") return py::Number::of_float(-std::numeric_limits<double>::quiet_NaN());
  return py::Number::of_float(std::strtod(text.c_str(), nullptr));  // hex floats and inf
}

TEST(PyFormat, MatchesPythonFormatForIntsAndFloats) {
  auto rows = read_tsv("fixtures/pyformat_values.txt", 4);
  ASSERT_GT(rows.size(), 4000u);
  int failures = 0, errors = 0;
  for (const auto& r : rows) {
    py::Number v = parse_number(r[0], r[1]);
    const std::string& spec = r[2];
    const std::string& expected = r[3];
    std::string got;
    try {
      got = py::format_number(v, spec);
    } catch (const Error& e) {
      got = std::string("!") + e.what();
      const std::string prefix = "![pyformat] ";
      if (got.rfind(prefix, 0) == 0) got = "!" + got.substr(prefix.size());
    }
    if (expected[0] == '!') ++errors;
    if (got != expected && ++failures <= 20)
      ADD_FAILURE() << "format(" << r[0] << " " << r[1] << ", '" << spec << "'): got '" << got << "', Python '"
                    << expected << "'";
  }
  EXPECT_EQ(failures, 0) << "of " << rows.size() << " cases";
  EXPECT_GT(errors, 500);  // the error cases are exercised too
}

TEST(PyFormat, FloatReprIsShortestRoundTrip) {
  EXPECT_EQ(py::float_repr(static_cast<double>(0.1234f)), "0.1234000027179718");
  EXPECT_EQ(py::float_repr(8.0), "8.0");
  EXPECT_EQ(py::float_repr(0.5), "0.5");
  EXPECT_EQ(py::float_repr(1e-05), "1e-05");
  EXPECT_EQ(py::float_repr(0.0001), "0.0001");
  EXPECT_EQ(py::float_repr(1e16), "1e+16");
  EXPECT_EQ(py::float_repr(9999999999999998.0), "9999999999999998.0");
  EXPECT_EQ(py::float_repr(-0.0), "-0.0");
  EXPECT_EQ(py::float_repr(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(py::float_repr(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(py::float_repr(5e-324), "5e-324");
  EXPECT_EQ(py::float_repr(1.7976931348623157e308), "1.7976931348623157e+308");
}

TEST(PyFormat, IndexedFieldsAndErrors) {
  auto lookup = [](const std::string& key) {
    if (key == "x") return py::Number::of_float(1.5);
    if (key == "w") return py::Number::of_int(5);
    throw Error("[pyformat] KeyError: '" + key + "'");
  };
  EXPECT_EQ(py::format_indexed("a{0[x]}b", lookup), "a1.5b");
  EXPECT_EQ(py::format_indexed("{0[x]:{0[w]}}", lookup), "  1.5");
  EXPECT_EQ(py::format_indexed("{{{0[w]:03d}}}", lookup), "{005}");
  auto error_of = [&](const std::string& fmt) {
    try {
      py::format_indexed(fmt, lookup);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("{"), "[pyformat] Single '{' encountered in format string");
  EXPECT_EQ(error_of("}"), "[pyformat] Single '}' encountered in format string");
  EXPECT_EQ(error_of("a{0[x]"), "[pyformat] expected '}' before end of string");
  EXPECT_EQ(error_of("{0[x]x}"), "[pyformat] Only '.' or '[' may follow ']' in format field specifier");
  EXPECT_EQ(error_of("{0[]}"), "[pyformat] Empty attribute in format string");
  EXPECT_EQ(error_of("{0[5]}"), "[pyformat] KeyError: 5");
  EXPECT_EQ(error_of("{0[x]:{0[w]:{0[w]}}}"), "[pyformat] Max string recursion exceeded");
}

NameMetrics parse_metrics(const std::string& spec) {
  NameMetrics m;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ';')) {
    if (item.empty()) continue;
    size_t eq = item.rfind('=');
    size_t colon = item.find(':', eq);
    const py::Number n = parse_number(item.substr(eq + 1, colon - eq - 1), item.substr(colon + 1));
    m[item.substr(0, eq)] = n.is_int ? Value(n.i) : Value(n.f);
  }
  return m;
}

TEST(PyFormat, CheckpointFilenameTemplatesMatchLightning) {
  auto rows = read_tsv("fixtures/pyformat_templates.txt", 4);
  ASSERT_GT(rows.size(), 40u);
  for (const auto& r : rows) {
    NameMetrics metrics = parse_metrics(r[2]);
    std::string got;
    try {
      got = ModelCheckpoint::format_filename(r[0], metrics, r[1] == "1");
    } catch (const Error& e) {
      got = e.what();
      size_t colon = got.find("': ");
      ASSERT_EQ(got.rfind("[ModelCheckpoint] filename template '", 0), 0u) << got;
      got = "!" + got.substr(colon + 3);
    }
    EXPECT_EQ(got, r[3]) << "template '" << r[0] << "' auto=" << r[1] << " metrics " << r[2];
  }
}

TEST(PyFormat, CheckpointNameAddsDirectoryVersionAndExtension) {
  ModelCheckpoint cb({.dirpath = "/tmp/ember-ckpt-names", .filename = "{epoch}-{val_loss:.2f}"});
  NameMetrics m{{"epoch", Value(3)}, {"val_loss", Value(0.25)}};
  EXPECT_EQ(cb.format_checkpoint_name(m), "/tmp/ember-ckpt-names/epoch=3-val_loss=0.25.ckpt");
  EXPECT_EQ(cb.format_checkpoint_name(m, "", 2), "/tmp/ember-ckpt-names/epoch=3-val_loss=0.25-v2.ckpt");
  EXPECT_EQ(cb.format_checkpoint_name(m, "last"), "/tmp/ember-ckpt-names/last.ckpt");
  ModelCheckpoint plain;
  EXPECT_EQ(plain.format_checkpoint_name({{"epoch", Value(0)}, {"step", Value(5)}}),
            "epoch=0-step=5.ckpt");  // no dirpath before setup
  try {
    ModelCheckpoint::format_filename("{name}", {{"name", Value("text")}}, true);
    ADD_FAILURE() << "a string metric was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("[ModelCheckpoint] metric 'name' for the checkpoint name must be an int or a "
                                          "float, got ", 0), 0u) << e.what();
  }
}

TEST(PyFormat, TimedeltaReprAndStr) {
  using namespace std::chrono;
  EXPECT_EQ(detail::timedelta_repr(minutes(30)), "datetime.timedelta(seconds=1800)");
  EXPECT_EQ(detail::timedelta_repr(seconds(0)), "datetime.timedelta(0)");
  EXPECT_EQ(detail::timedelta_repr(hours(49) + milliseconds(5)), "datetime.timedelta(days=2, seconds=3600, microseconds=5000)");
  EXPECT_EQ(detail::timedelta_repr(duration<double>(-1.5)), "datetime.timedelta(days=-1, seconds=86398, microseconds=500000)");
  EXPECT_EQ(detail::timedelta_str(minutes(30)), "0:30:00");
  EXPECT_EQ(detail::timedelta_str(hours(25) + microseconds(7)), "1 day, 1:00:00.000007");
  EXPECT_EQ(detail::timedelta_str(hours(72)), "3 days, 0:00:00");
}

}  // namespace
}  // namespace ember
