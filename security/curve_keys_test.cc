#include "security/curve_keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace yard {
namespace {

std::string TempDir() {
  std::string tmpl = ::testing::TempDir() + "yard_keys_XXXXXX";
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(CurveKeysTest, GeneratedPairIsZ85AndConsistent) {
  ASSERT_TRUE(CurveAvailable());
  auto keys = GenerateKeyPair();
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_TRUE(IsZ85Key(keys->public_key));
  EXPECT_TRUE(IsZ85Key(keys->secret_key));
  auto pub = PublicKeyOf(keys->secret_key);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(*pub, keys->public_key);
  EXPECT_FALSE(IsZ85Key("short"));
  EXPECT_FALSE(IsZ85Key(std::string(40, '"')));  // not in the alphabet
}

TEST(CurveKeysTest, FilesRoundTripWithSecretMode0600) {
  const std::string dir = TempDir();
  const std::string path = dir + "/broker";
  ::umask(0);  // the secret file's mode must not depend on the umask
  auto keys = GenerateKeyPair();
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(WriteKeyPair(path, *keys, false).ok());
  ::umask(022);
  EXPECT_EQ(ModeOf(path + ".secret"), 0600u);
  EXPECT_EQ(ModeOf(path + ".public"), 0644u);
  auto pub = ReadKeyFile(path + ".public");
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(*pub, keys->public_key);
  auto loaded = LoadSecretKeyFile(path + ".secret");
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->secret_key, keys->secret_key);
  EXPECT_EQ(loaded->public_key, keys->public_key);
}

TEST(CurveKeysTest, RefusesToOverwriteUnlessForced) {
  const std::string path = TempDir() + "/k";
  auto first = GenerateKeyPair(), second = GenerateKeyPair();
  ASSERT_TRUE(WriteKeyPair(path, *first, false).ok());
  Status again = WriteKeyPair(path, *second, false);
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(ReadKeyFile(path + ".public").value(), first->public_key);
  ASSERT_EQ(::chmod((path + ".secret").c_str(), 0640), 0);
  ASSERT_TRUE(WriteKeyPair(path, *second, true).ok());
  EXPECT_EQ(ReadKeyFile(path + ".public").value(), second->public_key);
  EXPECT_EQ(ModeOf(path + ".secret"), 0600u);  // a new file, not the old mode
}

TEST(CurveKeysTest, SecretReadableByOthersIsRefused) {
  const std::string path = TempDir() + "/k";
  ASSERT_TRUE(WriteKeyPair(path, GenerateKeyPair().value(), false).ok());
  ASSERT_EQ(::chmod((path + ".secret").c_str(), 0644), 0);
  EXPECT_FALSE(LoadSecretKeyFile(path + ".secret").ok());
}

TEST(CurveKeysTest, KeyFilesAllowCommentsAndRefuseJunk) {
  const std::string dir = TempDir();
  auto keys = GenerateKeyPair();
  WriteText(dir + "/ok", "# broker 1\n\n  " + keys->public_key + "  \n");
  EXPECT_EQ(ReadKeyFile(dir + "/ok").value(), keys->public_key);
  WriteText(dir + "/two", keys->public_key + "\n" + keys->public_key + "\n");
  EXPECT_FALSE(ReadKeyFile(dir + "/two").ok());
  WriteText(dir + "/bad", "not a key\n");
  EXPECT_FALSE(ReadKeyFile(dir + "/bad").ok());
  EXPECT_FALSE(ReadKeyFile(dir + "/missing").ok());
}

TEST(CurveKeysTest, KeyArgumentIsAKeyOrAFile) {
  const std::string dir = TempDir();
  auto keys = GenerateKeyPair();
  EXPECT_EQ(ResolveKeyArgument(keys->public_key).value(), keys->public_key);
  WriteText(dir + "/b.public", keys->public_key + "\n");
  EXPECT_EQ(ResolveKeyArgument(dir + "/b.public").value(), keys->public_key);
  EXPECT_FALSE(ResolveKeyArgument(dir + "/none").ok());
}

TEST(CurveKeysTest, ClientNeedsAServerKey) {
  CurveClientOptions c;
  EXPECT_FALSE(c.enabled());
  auto keys = GenerateKeyPair();
  c.public_key = keys->public_key;
  c.secret_key = keys->secret_key;
  EXPECT_FALSE(c.ServerKeyFor("tcp://h:1").ok());
  c.server_key = "fixed";
  c.server_key_for = [](const std::string& ep) {
    return ep == "tcp://h:1" ? std::string("found") : std::string();
  };
  EXPECT_EQ(c.ServerKeyFor("tcp://h:1").value(), "found");
  EXPECT_EQ(c.ServerKeyFor("tcp://h:2").value(), "fixed");
}

}  // namespace
}  // namespace yard
