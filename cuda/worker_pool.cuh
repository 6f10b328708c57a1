/*
 * worker_pool.cuh (host code): threads kept for the life of their owner, which hands them one task per
 * round. The CUDA decoder decompresses codec-1 sections on them: starting threads and their zstd contexts
 * on every call cost more than the decompression of a call's few sections (an export to Mustafar's layout
 * calls once per layer and tensor).
 */
#ifndef SQKV_CUDA_WORKER_POOL_CUH
#define SQKV_CUDA_WORKER_POOL_CUH

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sqkv_cuda {

class WorkerPool {
public:
    WorkerPool() = default;
    WorkerPool(const WorkerPool &) = delete;
    WorkerPool &operator=(const WorkerPool &) = delete;
    ~WorkerPool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            quitting_ = true;
        }
        start_.notify_all();
        for (std::thread &t : threads_) t.join();
    }

    /* Starts task(w) on workers w = 0 .. n - 1 (starting the threads missing) and returns; wait() returns
     * when all n have returned. One round at a time, never two calls at once: start, the owner's own work,
     * wait. task must live until wait returns. Returns false, having started nothing, when a thread cannot
     * be started. */
    bool start(unsigned n, const std::function<void(unsigned)> &task) {
        try {
            while (threads_.size() < n) {
                const unsigned w = (unsigned)threads_.size();
                const uint64_t now = round_; /* only the owner changes it */
                threads_.emplace_back([this, w, now] { loop(w, now); });
            }
        } catch (...) {
            return false; /* std::system_error: the threads already started stay for later rounds */
        }
        std::lock_guard<std::mutex> lock(mu_);
        task_ = &task;
        taking_part_ = n;
        finished_ = 0;
        round_++;
        start_.notify_all();
        return true;
    }

    void wait() {
        std::unique_lock<std::mutex> lock(mu_);
        done_.wait(lock, [&] { return finished_ == taking_part_; });
        task_ = nullptr;
    }

private:
    /* seen: the round under way when the thread was started, which is not its to run */
    void loop(unsigned w, uint64_t seen) {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            start_.wait(lock, [&] { return quitting_ || round_ != seen; });
            if (quitting_) return;
            seen = round_;
            if (w >= taking_part_) continue;
            const std::function<void(unsigned)> *task = task_;
            lock.unlock();
            (*task)(w);
            lock.lock();
            if (++finished_ == taking_part_) done_.notify_one();
        }
    }

    std::mutex mu_;
    std::condition_variable start_, done_;
    std::vector<std::thread> threads_;
    const std::function<void(unsigned)> *task_ = nullptr;
    unsigned taking_part_ = 0, finished_ = 0;
    uint64_t round_ = 0;
    bool quitting_ = false;
};

}  // namespace sqkv_cuda

#endif
