#include "security/key_set.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "security/curve_keys.h"

namespace yard {
namespace {

std::string TempDir() {
  std::string tmpl = ::testing::TempDir() + "yard_keyset_XXXXXX";
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

TEST(KeySetTest, FromDirectoryOfPublicFiles) {
  const std::string dir = TempDir();
  auto a = GenerateKeyPair(), b = GenerateKeyPair();
  ASSERT_TRUE(WriteKeyPair(dir + "/a", *a, false).ok());
  ASSERT_TRUE(WriteKeyPair(dir + "/b", *b, false).ok());
  std::ofstream(dir + "/README") << "not a key file\n";
  auto set = KeySet::Load(dir);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->size(), 2u);
  EXPECT_TRUE(set->Contains(a->public_key));
  EXPECT_TRUE(set->Contains(b->public_key));
  EXPECT_FALSE(set->Contains(a->secret_key));  // .secret files are skipped
}

TEST(KeySetTest, FromFileWithCommentsAndBlankLines) {
  const std::string dir = TempDir();
  auto a = GenerateKeyPair(), b = GenerateKeyPair();
  std::ofstream(dir + "/keys") << "# producers\n"
                               << a->public_key << "\n\n"
                               << "  " << b->public_key << "\r\n# end\n";
  auto set = KeySet::Load(dir + "/keys");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->size(), 2u);
  EXPECT_TRUE(set->Contains(b->public_key));
}

TEST(KeySetTest, OneBadLineFailsTheWholeLoadNamingIt) {
  const std::string dir = TempDir();
  auto a = GenerateKeyPair();
  std::ofstream(dir + "/keys") << a->public_key << "\nthis is no key\n";
  auto set = KeySet::Load(dir + "/keys");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find(":2:"), std::string::npos)
      << set.status().message();
  EXPECT_FALSE(KeySet::Load(dir + "/missing").ok());
}

}  // namespace
}  // namespace yard
