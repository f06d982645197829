// byte_order: explicit big- and little-endian loads and stores for codecs. Every wire format of
// the family states its byte order; codecs never cast structs onto buffers. Pure, header-only.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace dl {

template <class T>
inline T load_raw(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline std::uint16_t bswap(std::uint16_t v) { return __builtin_bswap16(v); }
inline std::uint32_t bswap(std::uint32_t v) { return __builtin_bswap32(v); }
inline std::uint64_t bswap(std::uint64_t v) { return __builtin_bswap64(v); }

template <class T>
inline T to_be(T v) { return std::endian::native == std::endian::big ? v : bswap(v); }
template <class T>
inline T to_le(T v) { return std::endian::native == std::endian::little ? v : bswap(v); }

// Big-endian (network order).
inline void put_u16(std::uint8_t* p, std::uint16_t v) { v = to_be(v); std::memcpy(p, &v, 2); }
inline void put_u32(std::uint8_t* p, std::uint32_t v) { v = to_be(v); std::memcpy(p, &v, 4); }
inline void put_u64(std::uint8_t* p, std::uint64_t v) { v = to_be(v); std::memcpy(p, &v, 8); }
inline void put_f64(std::uint8_t* p, double v) { put_u64(p, std::bit_cast<std::uint64_t>(v)); }
inline std::uint16_t get_u16(const std::uint8_t* p) { return to_be(load_raw<std::uint16_t>(p)); }
inline std::uint32_t get_u32(const std::uint8_t* p) { return to_be(load_raw<std::uint32_t>(p)); }
inline std::uint64_t get_u64(const std::uint8_t* p) { return to_be(load_raw<std::uint64_t>(p)); }
inline double get_f64(const std::uint8_t* p) { return std::bit_cast<double>(get_u64(p)); }

// Little-endian (the seed Datalink's and most numpy data).
inline void put_u16_le(std::uint8_t* p, std::uint16_t v) { v = to_le(v); std::memcpy(p, &v, 2); }
inline void put_u32_le(std::uint8_t* p, std::uint32_t v) { v = to_le(v); std::memcpy(p, &v, 4); }
inline void put_u64_le(std::uint8_t* p, std::uint64_t v) { v = to_le(v); std::memcpy(p, &v, 8); }
inline void put_f64_le(std::uint8_t* p, double v) { put_u64_le(p, std::bit_cast<std::uint64_t>(v)); }
inline std::uint16_t get_u16_le(const std::uint8_t* p) { return to_le(load_raw<std::uint16_t>(p)); }
inline std::uint32_t get_u32_le(const std::uint8_t* p) { return to_le(load_raw<std::uint32_t>(p)); }
inline std::uint64_t get_u64_le(const std::uint8_t* p) { return to_le(load_raw<std::uint64_t>(p)); }
inline double get_f64_le(const std::uint8_t* p) { return std::bit_cast<double>(get_u64_le(p)); }

}  // namespace dl
