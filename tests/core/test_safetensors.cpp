#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"

namespace muongpt {
namespace {

namespace fs = std::filesystem;

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("muongpt_st_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write_good() const {
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    std::vector<uint16_t> b = {float_to_bf16(0.5f), float_to_bf16(-2.0f)};
    std::vector<int32_t> c = {7, -8, 9};
    std::string p = path("good.safetensors");
    write_safetensors(p,
                      {{"a", DType::f32, {2, 3}, a.data()},
                       {"b", DType::bf16, {2}, b.data()},
                       {"c", DType::i32, {3}, c.data()}},
                      {{"note", "hello"}});
    return p;
  }
  std::string error_of(const std::string& p) const {
    try {
      SafetensorsFile f(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(Safetensors, RoundTrip) {
  SafetensorsFile f(write_good());
  EXPECT_EQ(f.meta("note"), "hello");
  EXPECT_EQ(f.entry("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.read<double>("a"), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.read<float>("b"), (std::vector<float>{0.5f, -2.0f}));
  EXPECT_EQ(f.read<int32_t>("c"), (std::vector<int32_t>{7, -8, 9}));
  EXPECT_THROW(f.entry("missing"), Error);
  EXPECT_THROW(f.meta("missing"), Error);
}

TEST_F(Safetensors, CorruptFilesAreRefusedWithTheirPath) {
  std::string good = write_good();
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(path(name), std::ios::binary) << content;
    return path(name);
  };
  EXPECT_EQ(error_of(path("nope")), path("nope") + ": cannot open file: no such file");
  EXPECT_NE(error_of(write("short", "abc")).find("shorter than its header"), std::string::npos);
  std::string huge = bytes;
  huge[5] = 0x7f;  // header length far beyond the file
  EXPECT_NE(error_of(write("huge", huge)).find("truncated"), std::string::npos);
  std::string cut = bytes.substr(0, bytes.size() - 5);  // data section cut short
  EXPECT_NE(error_of(write("cut", cut)).find("outside the file"), std::string::npos);
  std::string garbled = bytes;
  garbled[9] = '#';  // breaks the JSON
  EXPECT_NE(error_of(write("garbled", garbled)).find("not valid JSON"), std::string::npos);
  std::string msg = error_of(write("cut2", cut));
  EXPECT_EQ(msg.rfind(path("cut2"), 0), 0u) << msg;
}

}  // namespace
}  // namespace muongpt
