// HParams lookups.
#include "ember/train/hparams.h"

namespace ember {

const Value& HParams::at(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    std::string keys;
    for (auto& [k, v] : values_) keys += (keys.empty() ? "" : ", ") + k;
    EMBER_THROW("[hparams] missing key '", key, "' (present: ", keys.empty() ? "none" : keys, ")");
  }
  return it->second;
}

void HParams::update(const HParams& overrides) {
  for (auto& [k, v] : overrides.values()) values_[k] = v;
}

}  // namespace ember
