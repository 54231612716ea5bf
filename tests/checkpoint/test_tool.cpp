// ember-ckpt: inspect (text and Lightning-keyed JSON), verify, diff, safetensors export/import
// (including a file written by PyTorch, tests/reference/gen_safetensors.py) and the exit codes of
// the installed binary.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ember/checkpoint/checkpoint.h"
#include "tools/ckpt/commands.h"
#include "tests/checkpoint/golden_data.h"
#include "tests/checkpoint/util.h"
#include "tests/support/check.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;
namespace tool = ember::ckpt_tool;
using json = nlohmann::json;

std::string golden(const std::string& f) { return std::string(EMBER_CKPT_TEST_DIR) + "/golden/" + f; }
std::string reference(const std::string& f) { return std::string(EMBER_TEST_DATA_DIR) + "/reference/fixtures/" + f; }

// Runs the ember-ckpt binary; returns its exit code and fills out with stdout + stderr.
int run_tool(const std::string& args, std::string* out = nullptr) {
  return run_command(std::string(EMBER_CKPT_TOOL) + " " + args, out);
}

void corrupt_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = static_cast<char>(f.get());
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x01));
}

TEST(Tool, InspectText) {
  std::ostringstream out;
  EXPECT_EQ(tool::inspect(golden("v1_0_trainer.ckpt"), false, out), 0);
  std::string s = out.str();
  for (const char* want : {"format:           1.0 (Ember 0.1.0)", "epoch:            3", "global_step:      40",
                           "hyper_parameters: {\"hidden\":4,\"lr\":0.001,\"name\":\"mlp\"}", "optimizer_states",
                           "0.state.fc1.weight.exp_avg", "fc2.bias", "(4, 3)"})
    EXPECT_NE(s.find(want), std::string::npos) << "missing '" << want << "' in\n" << s;
}

TEST(Tool, InspectJsonUsesLightningKeys) {
  std::ostringstream out;
  ASSERT_EQ(tool::inspect(golden("v1_0_trainer.ckpt"), true, out), 0);
  json j = json::parse(out.str());
  EXPECT_EQ(j["format_version"], "1.0");
  EXPECT_EQ(j["ember_version"], "0.1.0");
  EXPECT_EQ(j["weights_only"], false);
  EXPECT_EQ(j["epoch"], 3);
  EXPECT_EQ(j["global_step"], 40);
  ASSERT_TRUE(j["state_dict"].is_array());
  EXPECT_EQ(j["state_dict"].size(), 7u);
  bool found = false;
  for (auto& t : j["state_dict"])
    if (t["name"] == "fc1.weight") {
      found = true;
      EXPECT_EQ(t["dtype"], "f32");
      EXPECT_EQ(t["shape"], json::array({4, 3}));
    }
  EXPECT_TRUE(found);
  const json& adam = j["optimizer_states"][0];
  EXPECT_EQ(adam["type"], "Adam");
  EXPECT_EQ(adam["param_groups"][0]["lr"], 1e-3);
  EXPECT_EQ(adam["param_groups"][0]["betas"], json::array({0.9, 0.999}));
  EXPECT_EQ(adam["state"]["fc1.weight"]["step"], 40);
  EXPECT_EQ(adam["state"]["fc1.weight"]["exp_avg"]["shape"], json::array({4, 3}));
  EXPECT_EQ(adam["state"]["fc1.weight"]["exp_avg"]["tensor"], "0.state.fc1.weight.exp_avg");
  EXPECT_EQ(j["lr_schedulers"][0]["type"], "StepLR");
  EXPECT_EQ(j["lr_schedulers"][0]["last_epoch"], 4);
  EXPECT_EQ(j["callbacks"]["ModelCheckpoint{'monitor': 'val_loss'}"]["best_model_score"], 0.25);
  EXPECT_EQ(j["hyper_parameters"]["name"], "mlp");
  EXPECT_EQ(j["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"], 3);
  EXPECT_EQ(j["rng_states"]["default"]["bytes"], 24);
  EXPECT_EQ(j["extras"]["note"], "golden");
  EXPECT_EQ(j["tensors"].size(), 17u);
  EXPECT_EQ(j["sections"].size(), 11u);

  std::ostringstream w;
  ASSERT_EQ(tool::inspect(golden("v1_0_weights_only.ckpt"), true, w), 0);
  json jw = json::parse(w.str());
  EXPECT_EQ(jw["weights_only"], true);
  EXPECT_TRUE(jw["optimizer_states"].is_null());

  std::ostringstream b;  // non-finite floats and bytes have JSON renderings
  ASSERT_EQ(tool::inspect(golden("v1_0_basic.ckpt"), true, b), 0);
  json jb = json::parse(b.str());
  EXPECT_EQ(jb["hyper_parameters"]["nan"], "NaN");
  EXPECT_EQ(jb["hyper_parameters"]["ninf"], "-Infinity");
  EXPECT_EQ(jb["hyper_parameters"]["b"]["bytes"], 256);
  EXPECT_TRUE(jb["epoch"].is_null());
}

TEST(Tool, VerifyReportsTheFirstFault) {
  ScratchDir dir;
  std::ostringstream ok;
  EXPECT_EQ(tool::verify(golden("v1_0_trainer_zlib.ckpt"), ok), 0);
  EXPECT_NE(ok.str().find("OK: "), std::string::npos);
  EXPECT_NE(ok.str().find("17 tensors"), std::string::npos) << ok.str();

  std::string path = dir.file("bad.ckpt");
  write_bytes(path, read_bytes(golden("v1_0_trainer.ckpt")));
  uint64_t off = ck::Reader(path).tensor_info(ck::kOptimizerStates, "0.state.fc2.bias.exp_avg_sq").offset;
  corrupt_byte(path, off + 3);
  std::ostringstream bad;
  EXPECT_EQ(tool::verify(path, bad), 1);
  EXPECT_NE(bad.str().find("FAILED: [checkpoint] '" + path +
                           "': tensor 'optimizer_states/0.state.fc2.bias.exp_avg_sq': checksum mismatch"),
            std::string::npos)
      << bad.str();
  std::ostringstream missing;
  EXPECT_EQ(tool::verify(dir.file("none.ckpt"), missing), 1);
  EXPECT_NE(missing.str().find("cannot open"), std::string::npos);
}

TEST(Tool, DiffReportsMetadataAndMaxAbsDifference) {
  ScratchDir dir;
  Value a = golden::cases_v1_0()[1].root;
  Value b = a.deep_copy();
  b.as_map().at(ck::kHyperParameters).as_map()["lr"] = Value(2e-3);
  b.as_map().at(ck::kHyperParameters).as_map().erase("hidden");
  Tensor w = b.at(ck::kStateDict).at("fc1.weight").as_tensor();
  w.data_ptr<float>()[5] += 0.5f;
  ck::save(dir.file("a.ckpt"), a);
  ck::save(dir.file("b.ckpt"), b);

  std::ostringstream same;
  EXPECT_EQ(tool::diff(dir.file("a.ckpt"), golden("v1_0_trainer.ckpt"), 0, same), 0);
  EXPECT_NE(same.str().find("no differences"), std::string::npos) << same.str();

  std::ostringstream out;
  EXPECT_EQ(tool::diff(dir.file("a.ckpt"), dir.file("b.ckpt"), 0, out), 1);
  std::string s = out.str();
  EXPECT_NE(s.find("value    hyper_parameters/lr: 0.001 vs 0.002"), std::string::npos) << s;
  EXPECT_NE(s.find("only in A: hyper_parameters/hidden"), std::string::npos) << s;
  EXPECT_NE(s.find("tensor   state_dict/fc1.weight: max |a-b| = 0.5\n"), std::string::npos) << s;
  EXPECT_NE(s.find("tensor   state_dict/fc2.weight: max |a-b| = 0  (same)"), std::string::npos) << s;
  EXPECT_NE(s.find("3 difference(s)"), std::string::npos) << s;

  std::ostringstream tolerant;  // within atol the tensor counts as equal, metadata still differs
  EXPECT_EQ(tool::diff(dir.file("a.ckpt"), dir.file("b.ckpt"), 1.0, tolerant), 1);
  EXPECT_NE(tolerant.str().find("2 difference(s)"), std::string::npos) << tolerant.str();
}

// Reads a .safetensors header (independently of the tool) as JSON.
json safetensors_header(const std::vector<uint8_t>& bytes, size_t* data_start) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  *data_start = 8 + n;
  EXPECT_EQ(n % 8, 0u);
  return json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
}

TEST(Tool, ExportSafetensorsWritesTheWeights) {
  ScratchDir dir;
  std::string out = dir.file("w.safetensors");
  tool::export_safetensors(golden("v1_0_trainer.ckpt"), out);
  std::vector<uint8_t> bytes = read_bytes(out);
  size_t start;
  json h = safetensors_header(bytes, &start);
  EXPECT_EQ(h["__metadata__"]["format"], "pt");
  EXPECT_EQ(h.size(), 8u);  // 7 tensors + __metadata__
  EXPECT_EQ(h["bn.num_batches_tracked"]["dtype"], "I64");
  EXPECT_EQ(h["fc1.weight"]["shape"], json::array({4, 3}));
  uint64_t total = 0;
  for (auto& [k, v] : h.items())
    if (k != "__metadata__") total += v["data_offsets"][1].get<uint64_t>() - v["data_offsets"][0].get<uint64_t>();
  EXPECT_EQ(start + total, bytes.size());
  uint64_t b0 = h["fc1.weight"]["data_offsets"][0];
  float v11;
  std::memcpy(&v11, bytes.data() + start + b0 + 11 * 4, 4);
  EXPECT_EQ(v11, 11 * 0.125f);
  // Importing it back gives the same state_dict.
  tool::import_safetensors(out, dir.file("back.ckpt"));
  EXPECT_TRUE(ck::Reader(dir.file("back.ckpt")).section(ck::kStateDict) ==
              golden::cases_v1_0()[1].root.at(ck::kStateDict));
}

TEST(Tool, ImportSafetensorsFromPyTorch) {
  ScratchDir dir;
  for (bool zlib : {false, true}) {
    std::string path = dir.file(zlib ? "z.ckpt" : "r.ckpt");
    EXPECT_EQ(tool::import_safetensors(reference("safetensors_torch.safetensors"), path, {.compress = zlib}), 11u);
    ck::Reader r(path, {.verify = ck::Verify::all});
    Fixture fx = load_fixture("fixtures/safetensors_torch.txt");
    ASSERT_EQ(fx.tensors.size(), 11u);
    for (auto& [name, expected] : fx.tensors) {
      Tensor got = r.load_tensor(ck::kStateDict, name);
      EXPECT_TRUE(bit_equal(got, expected)) << name;
    }
    Value extras = r.section(ck::kExtras);
    EXPECT_EQ(extras.at("safetensors_metadata").at("source").as_string(), "gen_safetensors.py");
  }
}

TEST(Tool, ImportRejectsMalformedSafetensors) {
  ScratchDir dir;
  auto file = [](const std::string& header, size_t data) {
    std::vector<uint8_t> b(8 + header.size() + data, 0);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(header.size() >> (8 * i));
    std::memcpy(b.data() + 8, header.data(), header.size());
    return b;
  };
  struct Case {
    std::vector<uint8_t> bytes;
    std::string error;
  };
  std::vector<uint8_t> huge(16, 0);
  huge[5] = 1;  // header length 2^40
  std::vector<Case> cases = {
      {{1, 2, 3}, "file too short (3 bytes)"},
      {huge, "header length 1099511627776 exceeds"},
      {file("{\"a\":", 0), "header is not valid JSON"},
      {file("{\"a\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2), "dtype I8, which Ember does not support"},
      {file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4), "has 4 bytes but its shape and dtype need 8"},
      {file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
            4),
       "(overlap or gap)"},
      {file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8), "4 data bytes are not covered"},
      {file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4), "lie outside the 4 data bytes"},
      {file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0), "overflows"},
      {file("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0), "invalid dimension -1"},
  };
  std::vector<uint8_t> boolean = file("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
  boolean[boolean.size() - 1] = 2;
  cases.push_back({boolean, "BOOL tensor 'm' holds byte 2 at element 1"});
  for (auto& c : cases) {
    write_bytes(dir.file("in.safetensors"), c.bytes);
    try {
      tool::import_safetensors(dir.file("in.safetensors"), dir.file("out.ckpt"));
      ADD_FAILURE() << "accepted; expected " << c.error;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.error), std::string::npos) << e.what();
    }
  }
}

TEST(Tool, BinaryExitCodes) {
  ScratchDir dir;
  std::string out;
  EXPECT_EQ(run_tool("--help", &out), 0);
  EXPECT_NE(out.find("inspect"), std::string::npos);
  EXPECT_NE(out.find("export-safetensors"), std::string::npos);
  EXPECT_EQ(run_tool("", &out), 2);
  EXPECT_EQ(run_tool("frobnicate x", &out), 2);
  EXPECT_EQ(run_tool("verify", &out), 2);  // missing FILE
  EXPECT_EQ(run_tool("verify " + golden("v1_0_basic.ckpt"), &out), 0);
  EXPECT_EQ(run_tool("inspect --json " + golden("v1_0_basic.ckpt"), &out), 0);
  EXPECT_EQ(json::parse(out)["format_version"], "1.0");
  EXPECT_EQ(run_tool("inspect " + dir.file("missing.ckpt"), &out), 1);
  EXPECT_NE(out.find("ember-ckpt: [checkpoint] cannot open"), std::string::npos) << out;
  std::string bad = dir.file("bad.ckpt");
  write_bytes(bad, read_bytes(golden("v1_0_basic.ckpt")));
  corrupt_byte(bad, 100);
  EXPECT_EQ(run_tool("verify " + bad, &out), 1);
  EXPECT_NE(out.find("FAILED"), std::string::npos);
  EXPECT_EQ(run_tool("diff " + golden("v1_0_basic.ckpt") + " " + golden("v1_0_basic.ckpt"), &out), 0);
  EXPECT_EQ(run_tool("diff " + golden("v1_0_basic.ckpt") + " " + golden("v1_0_align4k.ckpt"), &out), 0);
  EXPECT_EQ(run_tool("diff " + golden("v1_0_trainer.ckpt") + " " + golden("v1_0_weights_only.ckpt"), &out), 1);
  EXPECT_NE(out.find("only in A: section optimizer_states"), std::string::npos) << out;
  EXPECT_EQ(run_tool("diff " + golden("v1_0_basic.ckpt") + " " + dir.file("missing.ckpt"), &out), 2);
  EXPECT_EQ(run_tool("export-safetensors " + golden("v1_0_trainer.ckpt") + " " + dir.file("w.safetensors"), &out), 0);
  EXPECT_EQ(run_tool("import-safetensors --zlib " + dir.file("w.safetensors") + " " + dir.file("w.ckpt"), &out), 0);
  EXPECT_NE(out.find("(7 tensors)"), std::string::npos) << out;
  EXPECT_EQ(run_tool("export-safetensors " + golden("v1_0_basic.ckpt") + " " + dir.path() + "/no/dir/x", &out), 1);
}

}  // namespace
}  // namespace ember::test
