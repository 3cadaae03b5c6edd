#include "testing/hostile_messages.h"

#include <vector>

#include "schemas/codec.h"

namespace yard::testing {
namespace {

using StringOffsets = std::vector<flatbuffers::Offset<flatbuffers::String>>;

std::string Finish(flatbuffers::FlatBufferBuilder& fbb, wire::Body kind,
                   flatbuffers::Offset<void> body) {
  fbb.Finish(wire::CreateEnvelope(fbb, kProtocolVersion, kind, body));
  return {reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()};
}

std::string SmallJob() {
  Writer w;
  JobSpec spec;
  spec.id = JobId{7, 7};
  spec.task = "echo";
  spec.created_ms = 123;  // an int64 field: misaligned if the blob is
  return std::string(AsString(w.EncodeJob(spec)));
}

}  // namespace

std::string SharedNamesReady(size_t n, size_t bytes, size_t tags) {
  flatbuffers::FlatBufferBuilder fbb;
  auto one = fbb.CreateString(std::string(bytes, 't'));
  StringOffsets task_offsets(n, one), tag_offsets(tags, one);
  auto ready = wire::CreateReady(fbb, 1, 1, fbb.CreateVector(task_offsets),
                                 tags ? fbb.CreateVector(tag_offsets) : 0);
  return Finish(fbb, wire::Body::Ready, ready.Union());
}

std::string JobWithSharedTags(size_t n) {
  flatbuffers::FlatBufferBuilder fbb;
  auto task = fbb.CreateString("echo");
  auto tag = fbb.CreateString("gpu");
  StringOffsets tags(n, tag);
  auto tags_vec = fbb.CreateVector(tags);
  wire::Id id(1, 2);
  wire::JobBuilder job(fbb);
  job.add_id(&id);
  job.add_task(task);
  job.add_tags(tags_vec);
  fbb.Finish(job.Finish());
  return {reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()};
}

std::string SharedBlobSubmit(const std::string& job, size_t n) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceVectorAlignment(job.size(), 1, 8);
  auto data = fbb.CreateVector(reinterpret_cast<const uint8_t*>(job.data()),
                               job.size());
  std::vector<flatbuffers::Offset<wire::JobBlob>> blobs;
  blobs.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    blobs.push_back(wire::CreateJobBlob(fbb, data, 1, 1));
  }
  auto submit = wire::CreateSubmit(fbb, fbb.CreateVector(blobs));
  return Finish(fbb, wire::Body::Submit, submit.Union());
}

std::string SharedTableSubmit(size_t n) {
  const std::string job = SmallJob();
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceVectorAlignment(job.size(), 1, 8);
  auto blob = wire::CreateJobBlob(
      fbb, fbb.CreateVector(reinterpret_cast<const uint8_t*>(job.data()),
                            job.size()));
  std::vector<flatbuffers::Offset<wire::JobBlob>> blobs(n, blob);
  auto submit = wire::CreateSubmit(fbb, fbb.CreateVector(blobs));
  return Finish(fbb, wire::Body::Submit, submit.Union());
}

std::string MisalignedBlobSubmit() {
  const std::string job = SmallJob();
  flatbuffers::FlatBufferBuilder fbb;
  // The builder writes back to front: pad so that the data, once pushed,
  // ends 4 bytes short of an 8-byte boundary from the buffer's end.
  fbb.PreAlign(job.size() + 4, 8);
  auto shifted = fbb.CreateVector(reinterpret_cast<const uint8_t*>(job.data()),
                                  job.size());
  std::vector<flatbuffers::Offset<wire::JobBlob>> blobs{
      wire::CreateJobBlob(fbb, shifted)};
  auto submit = wire::CreateSubmit(fbb, fbb.CreateVector(blobs));
  return Finish(fbb, wire::Body::Submit, submit.Union());
}

std::string MisalignedIdsCancel(size_t n) {
  flatbuffers::FlatBufferBuilder fbb;
  // Written back to front: the ids, then their count; padded so that the
  // count ends up 8-aligned and the ids 4 bytes after it.
  fbb.PreAlign(n * sizeof(wire::Id) + sizeof(flatbuffers::uoffset_t), 8);
  for (size_t i = n; i-- > 0;) {
    const wire::Id id(1, i + 1);
    fbb.PushBytes(reinterpret_cast<const uint8_t*>(&id), sizeof id);
  }
  fbb.PushElement(static_cast<flatbuffers::uoffset_t>(n));
  const flatbuffers::Offset<flatbuffers::Vector<const wire::Id*>> ids(
      fbb.GetSize());
  return Finish(fbb, wire::Body::Cancel, wire::CreateCancel(fbb, ids).Union());
}

}  // namespace yard::testing
