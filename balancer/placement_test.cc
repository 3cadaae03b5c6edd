#include "balancer/placement.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace yard {
namespace {

using List = std::vector<std::string_view>;

// Appended (GCC 12 warns -Wrestrict on "literal" + std::string).
std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s += p;
  return s;
}

std::string SelectorError(const List& tags, const List& tols) {
  Status s = ValidateSelector(tags, tols);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  return s.message();
}

std::string LabelsError(const List& tags, const List& taints) {
  Status s = ValidateLabels(tags, taints);
  EXPECT_FALSE(s.ok());
  return s.message();
}

TEST(PlacementTest, AcceptsWellFormedEntries) {
  const std::string key63(63, 'k'), value63(63, 'v');
  const std::string long_entry = Cat({key63, "=", value63});
  EXPECT_TRUE(ValidateSelector({}, {}).ok());
  EXPECT_TRUE(ValidateSelector(
                  List{"gpu", "zone=eu-west.1", "a/b-c_d.e=", "9x", long_entry},
                  List{"spot", "gpu=a100"})
                  .ok());
  EXPECT_TRUE(ValidateLabels(List{"gpu=a100", "zone=eu"}, List{"spot"}).ok());
  List sixteen(16, "t");
  EXPECT_TRUE(ValidateSelector(sixteen, sixteen).ok());
}

TEST(PlacementTest, NamesTheBadEntryAndWhy) {
  EXPECT_EQ(SelectorError(List{"gpu!"}, {}),
            "tag 'gpu!': key may only contain letters, digits and . _ / -");
  EXPECT_EQ(SelectorError(List{"ok", ""}, {}), "tag '': key is empty");
  EXPECT_EQ(SelectorError(List{"=x"}, {}), "tag '=x': key is empty");
  EXPECT_EQ(SelectorError(List{"-gpu"}, {}),
            "tag '-gpu': key must start with a letter or digit");
  EXPECT_EQ(SelectorError({}, List{"zone=eu west"}),
            "toleration 'zone=eu west': value may only contain letters, "
            "digits and . _ -");
  EXPECT_EQ(SelectorError({}, List{"zone=a=b"}),
            "toleration 'zone=a=b': value may only contain letters, digits "
            "and . _ -");
  EXPECT_EQ(SelectorError({}, List{"gpu=*"}),
            "toleration 'gpu=*': value may only contain letters, digits and "
            ". _ - (to tolerate any value, give the key alone: 'gpu')");
  const std::string key64(64, 'k');
  EXPECT_EQ(SelectorError(List{key64}, {}),
            Cat({"tag '", key64, "': key is 64 characters (at most 63)"}));
  const std::string value64 = Cat({"k=", std::string(64, 'v')});
  EXPECT_EQ(SelectorError(List{value64}, {}),
            Cat({"tag '", value64, "': value is 64 characters (at most 63)"}));
  EXPECT_EQ(SelectorError(List(17, "t"), {}), "17 tags (at most 16)");
  EXPECT_EQ(SelectorError({}, List(17, "t")), "17 tolerations (at most 16)");
  EXPECT_EQ(LabelsError({}, List{"spot!"}),
            "taint 'spot!': key may only contain letters, digits and . _ / -");
  EXPECT_EQ(LabelsError({}, List(17, "t")), "17 taints (at most 16)");
  // Unprintable bytes are not echoed as they are.
  EXPECT_EQ(SelectorError(List{std::string_view("a\nb")}, {}),
            "tag 'a?b': key may only contain letters, digits and . _ / -");
}

Labels Worker(const List& tags, const List& taints = {}) {
  auto l = MakeLabels(tags, taints);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? std::move(l).value() : Labels{};
}

Selector Job(const List& tags, const List& tols = {}) {
  auto s = MakeSelector(tags, tols);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : Selector{};
}

TEST(PlacementTest, TagsAreRequired) {
  const Labels gpu = Worker({"gpu=a100", "zone=eu"});
  EXPECT_TRUE(Admits(gpu, Job({})));
  EXPECT_TRUE(Admits(gpu, Job({"gpu=a100"})));
  EXPECT_TRUE(Admits(gpu, Job({"gpu=a100", "zone=eu"})));
  EXPECT_FALSE(Admits(gpu, Job({"gpu=h100"})));
  EXPECT_FALSE(Admits(gpu, Job({"gpu=a100", "ssd"})));
  EXPECT_FALSE(Admits(Worker({}), Job({"gpu=a100"})));
  // Values are matched whole, keys too.
  EXPECT_FALSE(Admits(gpu, Job({"gpu=a10"})));
  EXPECT_FALSE(Admits(gpu, Job({"gp=a100"})));
}

TEST(PlacementTest, AKeyOnlyTagNeedsTheKeyWithAnyValue) {
  EXPECT_TRUE(Admits(Worker({"gpu=a100"}), Job({"gpu"})));
  EXPECT_TRUE(Admits(Worker({"gpu"}), Job({"gpu"})));
  EXPECT_TRUE(Admits(Worker({"gpu="}), Job({"gpu"})));
  EXPECT_FALSE(Admits(Worker({"ssd"}), Job({"gpu"})));
  // A worker's bare key is the key with an empty value, not any value.
  EXPECT_TRUE(Admits(Worker({"gpu"}), Job({"gpu="})));
  EXPECT_FALSE(Admits(Worker({"gpu"}), Job({"gpu=a100"})));
  EXPECT_FALSE(Admits(Worker({"gpu=a100"}), Job({"gpu="})));
}

TEST(PlacementTest, ATaintedWorkerTakesOnlyJobsToleratingAllItsTaints) {
  const Labels spot = Worker({"gpu"}, {"spot", "maint=friday"});
  EXPECT_FALSE(Admits(spot, Job({})));
  EXPECT_FALSE(Admits(spot, Job({}, {"spot"})));
  EXPECT_TRUE(Admits(spot, Job({}, {"spot", "maint=friday"})));
  EXPECT_TRUE(Admits(spot, Job({"gpu"}, {"maint=friday", "spot", "other"})));
  EXPECT_FALSE(Admits(spot, Job({"ssd"}, {"spot", "maint"})));
  // Tolerating is not required of untainted workers.
  EXPECT_TRUE(Admits(Worker({}), Job({}, {"spot"})));
}

TEST(PlacementTest, AKeyOnlyTolerationToleratesAnyValue) {
  const Labels w = Worker({}, {"maint=friday"});
  EXPECT_TRUE(Admits(w, Job({}, {"maint"})));
  EXPECT_FALSE(Admits(w, Job({}, {"maint=monday"})));
  EXPECT_FALSE(Admits(w, Job({}, {"maint="})));
  EXPECT_TRUE(Admits(Worker({}, {"spot"}), Job({}, {"spot"})));
  EXPECT_TRUE(Admits(Worker({}, {"spot"}), Job({}, {"spot="})));
  EXPECT_FALSE(Admits(Worker({}, {"spot"}), Job({}, {"spot=yes"})));
}

TEST(PlacementTest, MakeRejectsWhatValidateRejects) {
  auto s = MakeSelector(List{"gpu!"}, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(),
            "tag 'gpu!': key may only contain letters, digits and . _ / -");
  EXPECT_FALSE(MakeLabels({}, List{""}).ok());
}

TEST(PlacementTest, SelectorKeyIsCanonical) {
  EXPECT_EQ(SelectorKey({}, {}), "");
  EXPECT_EQ(SelectorKey(List{"zone=eu", "gpu"}, List{"spot"}),
            "gpu,zone=eu;spot");
  EXPECT_EQ(SelectorKey(List{"gpu", "zone=eu", "gpu"}, List{"spot"}),
            SelectorKey(List{"zone=eu", "gpu"}, List{"spot", "spot"}));
  EXPECT_EQ(SelectorKey({}, List{"spot"}), ";spot");
  EXPECT_EQ(SelectorKey(List{"gpu"}, {}), "gpu;");
  // Tags and tolerations stay apart.
  EXPECT_NE(SelectorKey(List{"spot"}, {}), SelectorKey({}, List{"spot"}));
  EXPECT_NE(SelectorKey(List{"gpu"}, {}), SelectorKey(List{"gpu="}, {}));
  EXPECT_EQ(Job({"b", "a"}, {"t"}).key, "a,b;t");
  // Order and duplicates change neither the key nor what it admits.
  const Labels w = Worker({"a", "b"}, {"t"});
  EXPECT_TRUE(Admits(w, Job({"b", "a", "b"}, {"t"})));
}

}  // namespace
}  // namespace yard
