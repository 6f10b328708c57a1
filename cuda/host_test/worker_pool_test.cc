/*
 * worker_pool_test.cc (host only, runs without a GPU): cuda/worker_pool.cuh, the CUDA decoder's kept
 * decompression threads. Rounds of different sizes on one pool run each taking-part worker exactly once,
 * the owner's own work overlaps them, threads start only as needed, and destruction joins idle threads.
 */
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "worker_pool.cuh"

using sqkv_cuda::WorkerPool;

TEST(WorkerPool, EachWorkerOfARoundRunsOnceAndRoundsDoNotMix) {
    WorkerPool pool;
    std::vector<std::atomic<int>> runs(16);
    for (unsigned round = 0; round < 200; round++) {
        const unsigned n = 1 + (round * 7) % 16; /* growing and shrinking rounds */
        for (auto &r : runs) r = 0;
        std::atomic<unsigned> out_of_range{0};
        const std::function<void(unsigned)> task = [&](unsigned w) {
            if (w >= n) out_of_range++;
            else runs[w]++;
        };
        ASSERT_TRUE(pool.start(n, task));
        pool.wait();
        EXPECT_EQ(0u, out_of_range.load()) << "round " << round;
        for (unsigned w = 0; w < 16; w++) EXPECT_EQ(w < n ? 1 : 0, runs[w].load()) << "round " << round << ", worker " << w;
    }
}

TEST(WorkerPool, OwnerWorksWhileTheRoundRuns) {
    WorkerPool pool;
    std::atomic<bool> owner_done{false};
    std::atomic<unsigned> saw_owner_done{0};
    const std::function<void(unsigned)> task = [&](unsigned) {
        /* the workers wait for the owner: start must have returned before they finish */
        while (!owner_done.load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
        saw_owner_done++;
    };
    ASSERT_TRUE(pool.start(4, task));
    owner_done = true;
    pool.wait();
    EXPECT_EQ(4u, saw_owner_done.load());
}

TEST(WorkerPool, DestroyedIdleAndNeverUsed) {
    { WorkerPool unused; }
    WorkerPool *pool = new WorkerPool;
    std::atomic<unsigned> ran{0};
    const std::function<void(unsigned)> task = [&](unsigned) { ran++; };
    ASSERT_TRUE(pool->start(8, task));
    pool->wait();
    delete pool; /* joins eight idle threads */
    EXPECT_EQ(8u, ran.load());
}
