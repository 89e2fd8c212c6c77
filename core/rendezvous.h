// Hands a small blob from rank 0 to every rank before any communicator exists: NCCL's unique id
// when the job was not launched by MPI (which would carry it by MPI_Bcast).
//
//   TCP   rank 0 listens on `port` (our own, not torchrun's MASTER_PORT) on all interfaces; the
//         others connect to `host`:`port`, retrying until the deadline, and each receives the
//         blob. Every message carries the world size, so a rank of another job is refused.
//   file  rank 0 writes `path` (a temporary file renamed into place, so a reader never sees half
//         of it); the others poll for it. The path must be on a filesystem every rank sees and
//         must not exist when the job starts (rank 0 refuses a leftover: it could be another
//         job's).
//
// Both give up with an Error naming the method, the peer and the wait once `timeout_s` passes.
#pragma once

#include <string>

namespace muongpt {

// rank 0 passes the blob and gets it back; other ranks pass "" and get rank 0's.
std::string rendezvous_tcp(int rank, int world, const std::string& host, int port,
                           const std::string& blob, double timeout_s);
std::string rendezvous_file(int rank, int world, const std::string& path, const std::string& blob,
                            double timeout_s);

}  // namespace muongpt
