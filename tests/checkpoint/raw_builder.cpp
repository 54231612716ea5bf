// Byte-level checkpoint builder for hostile-input tests (see raw_builder.h).
#include "tests/checkpoint/raw_builder.h"

#include <zlib.h>

#include <cstring>

namespace ember::test::raw {

uint32_t crc(const Bytes& b) { return static_cast<uint32_t>(::crc32(0, b.data(), static_cast<uInt>(b.size()))); }
void u16(Bytes& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void patch_u32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void patch_u64(Bytes& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

Bytes null_v() { return {0}; }
Bytes bool_v(uint8_t v) { return {1, v}; }
Bytes int_v(int64_t v) {
  Bytes b{2};
  u64(b, static_cast<uint64_t>(v));
  return b;
}
Bytes float_v(double v) {
  Bytes b{3};
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  u64(b, bits);
  return b;
}
Bytes str_v(const std::string& s) {
  Bytes b{4};
  u32(b, static_cast<uint32_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
  return b;
}
Bytes bytes_v(const Bytes& v) {
  Bytes b{5};
  u32(b, static_cast<uint32_t>(v.size()));
  b.insert(b.end(), v.begin(), v.end());
  return b;
}
Bytes list_v(const std::vector<Bytes>& items) {
  Bytes b{6};
  u32(b, static_cast<uint32_t>(items.size()));
  for (auto& i : items) b.insert(b.end(), i.begin(), i.end());
  return b;
}
Bytes map_v(const std::vector<std::pair<std::string, Bytes>>& items) {
  Bytes b{7};
  u32(b, static_cast<uint32_t>(items.size()));
  for (auto& [k, v] : items) {
    u16(b, static_cast<uint16_t>(k.size()));
    b.insert(b.end(), k.begin(), k.end());
    b.insert(b.end(), v.begin(), v.end());
  }
  return b;
}
Bytes tensor_v(uint32_t index) {
  Bytes b{8};
  u32(b, index);
  return b;
}

Bytes File::build() const {
  const uint64_t A = uint64_t{1} << align_log2;
  auto align = [&](uint64_t v) { return (v + A - 1) / A * A; };
  Bytes out;
  // Header.
  out = {0x89, 'E', 'M', 'B', 0x0D, 0x0A, 0x1A, 0x0A};
  u16(out, major);
  u16(out, minor);
  u32(out, required_flags);
  u32(out, optional_flags);
  out.push_back(endian);
  out.push_back(align_log2);
  u16(out, header_len);
  out.insert(out.end(), id.begin(), id.end());
  out.insert(out.end(), header_reserved.begin(), header_reserved.end());
  out.resize(60, 0);
  u32(out, header_crc ? *header_crc : crc(out));
  // Payloads, in section order.
  std::vector<std::vector<uint64_t>> offsets(sections.size());
  uint64_t pos = 64;
  for (size_t s = 0; s < sections.size(); ++s) {
    for (auto& t : sections[s].tensors) {
      uint64_t off = t.offset ? *t.offset : align(pos);
      offsets[s].push_back(off);
      if (off + t.payload.size() > out.size() && off < (uint64_t{1} << 32)) out.resize(off + t.payload.size(), padding_byte);
      if (off < (uint64_t{1} << 32) && !t.payload.empty())
        std::memcpy(out.data() + off, t.payload.data(), t.payload.size());
      if (off < (uint64_t{1} << 32)) pos = std::max<uint64_t>(pos, off + t.payload.size());
    }
  }
  uint64_t index_off = align(pos);
  out.resize(index_off, padding_byte);
  built_index_offset = index_off;
  // Index.
  Bytes idx;
  uint32_t total = 0;
  for (auto& s : sections) total += static_cast<uint32_t>(s.tensors.size());
  u32(idx, section_count ? *section_count : static_cast<uint32_t>(sections.size()));
  u32(idx, tensor_count ? *tensor_count : total);
  for (auto& s : sections) {
    u16(idx, static_cast<uint16_t>(s.name.size()));
    idx.insert(idx.end(), s.name.begin(), s.name.end());
    u32(idx, s.tensor_count ? *s.tensor_count : static_cast<uint32_t>(s.tensors.size()));
    u32(idx, s.meta_len ? *s.meta_len : static_cast<uint32_t>(s.meta.size()));
    idx.insert(idx.end(), s.meta.begin(), s.meta.end());
  }
  for (size_t s = 0; s < sections.size(); ++s) {
    for (size_t i = 0; i < sections[s].tensors.size(); ++i) {
      const Tensor& t = sections[s].tensors[i];
      u16(idx, static_cast<uint16_t>(t.name.size()));
      idx.insert(idx.end(), t.name.begin(), t.name.end());
      idx.push_back(t.dtype);
      idx.push_back(t.codec);
      idx.push_back(t.rank ? *t.rank : static_cast<uint8_t>(t.dims.size()));
      idx.push_back(t.reserved);
      for (uint64_t d : t.dims) u64(idx, d);
      u64(idx, offsets[s][i]);
      u64(idx, t.stored_len ? *t.stored_len : t.payload.size());
      u32(idx, t.crc ? *t.crc : crc(t.payload));
    }
  }
  idx.insert(idx.end(), index_suffix.begin(), index_suffix.end());
  out.insert(out.end(), idx.begin(), idx.end());
  // Footer.
  Bytes f = {0x89, 'E', 'N', 'D', 0x0D, 0x0A, 0x1A, 0x0A};
  u64(f, index_offset ? *index_offset : index_off);
  u64(f, index_length ? *index_length : idx.size());
  u32(f, index_crc ? *index_crc : crc(idx));
  u32(f, 0);
  auto fid = footer_id ? *footer_id : id;
  f.insert(f.end(), fid.begin(), fid.end());
  f.resize(60, 0);
  u32(f, footer_crc ? *footer_crc : crc(f));
  out.insert(out.end(), f.begin(), f.end());
  return out;
}

namespace {
Bytes f32_bytes(std::initializer_list<float> v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}
}  // namespace

File valid_file() {
  File f;
  Section sd;
  sd.name = "state_dict";
  sd.meta = map_v({{"b", tensor_v(0)}, {"w", tensor_v(1)}});
  sd.tensors.push_back({.name = "b", .dims = {2}, .payload = f32_bytes({1.5f, -2.0f})});
  sd.tensors.push_back({.name = "w", .dims = {2, 2}, .payload = f32_bytes({1, 2, 3, 4})});
  Section hp;
  hp.name = "hyper_parameters";
  hp.meta = map_v({{"lr", float_v(0.5)}});
  f.sections = {hp, sd};
  return f;
}

}  // namespace ember::test::raw
