// save_test.cc: sqkv_writer_save is crash-safe (sqkv.h): it writes a temporary file in the same
// directory and renames it over the target; on any failure the temporary file is removed and an
// existing file is left byte-identical.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace {

using namespace sqkv_test;

WriterPtr ReadyWriter(const Cache &c) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    sqkv_writer *w = nullptr;
    EXPECT_EQ(sqkv_writer_create(&c.geometry, &o, &w), SQKV_OK);
    WriterPtr p(w);
    for (uint32_t l = 0; l < c.geometry.n_layers; l++)
        EXPECT_EQ(sqkv_writer_add_layer(w, l, c.input_dtype, c.k[l].data(), c.v[l].data()), SQKV_OK);
    return p;
}

class Save : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = MakeTempDir("save");
        ASSERT_FALSE(dir_.empty());
        cache_ = MakeRandomCache(MakeGeometry(2, 2, 64, 300, 10), SQKV_DTYPE_FP32, 3);
        ASSERT_EQ(EncodeCache(cache_, Defaults(), &expected_), SQKV_OK);
    }
    void TearDown() override { RemoveTree(dir_); }
    static sqkv_writer_options Defaults() {
        sqkv_writer_options o;
        sqkv_writer_options_default(&o);
        return o;
    }
    std::string dir_;
    Cache cache_;
    Bytes expected_;
};

TEST_F(Save, CreatesFileWithTheBufferBytes) {
    WriterPtr w = ReadyWriter(cache_);
    const std::string path = dir_ + "/cache.sqkv";
    ASSERT_EQ(sqkv_writer_save(w.get(), path.c_str()), SQKV_OK);
    Bytes got;
    ASSERT_TRUE(ReadFile(path, &got));
    EXPECT_EQ(got, expected_);
    EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"cache.sqkv"}) << "temporary file left behind";
    // And the saved file opens through the file API.
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    ReaderPtr r(raw);
    ASSERT_EQ(sqkv_reader_open_file(r.get(), path.c_str()), SQKV_OK);
    EXPECT_EQ(sqkv_reader_verify(r.get()), SQKV_OK);
}

TEST_F(Save, ReplacesAnExistingFile) {
    const std::string path = dir_ + "/cache.sqkv";
    ASSERT_TRUE(WriteFile(path, Bytes(100000, 0x42)));
    WriterPtr w = ReadyWriter(cache_);
    ASSERT_EQ(sqkv_writer_save(w.get(), path.c_str()), SQKV_OK);
    Bytes got;
    ASSERT_TRUE(ReadFile(path, &got));
    EXPECT_EQ(got, expected_);
    // Saving again over the file it just wrote.
    ASSERT_EQ(sqkv_writer_save(w.get(), path.c_str()), SQKV_OK);
    ASSERT_TRUE(ReadFile(path, &got));
    EXPECT_EQ(got, expected_);
    EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"cache.sqkv"});
}

TEST_F(Save, NonexistentDirectoryIsIo) {
    WriterPtr w = ReadyWriter(cache_);
    const std::string path = dir_ + "/missing/cache.sqkv";
    EXPECT_EQ(sqkv_writer_save(w.get(), path.c_str()), SQKV_ERR_IO);
    EXPECT_NE(std::string(sqkv_writer_error_detail(w.get())), "");
    EXPECT_TRUE(ListDir(dir_).empty());
}

TEST_F(Save, NullPathIsInvalidArgument) {
    WriterPtr w = ReadyWriter(cache_);
    EXPECT_EQ(sqkv_writer_save(w.get(), nullptr), SQKV_ERR_INVALID_ARGUMENT);
}

TEST_F(Save, SaveBeforeAllLayersIsStateAndWritesNothing) {
    sqkv_writer_options o = Defaults();
    sqkv_writer *raw = nullptr;
    ASSERT_EQ(sqkv_writer_create(&cache_.geometry, &o, &raw), SQKV_OK);
    WriterPtr w(raw);
    EXPECT_EQ(sqkv_writer_save(w.get(), (dir_ + "/x.sqkv").c_str()), SQKV_ERR_STATE);
    EXPECT_TRUE(ListDir(dir_).empty());
}

TEST_F(Save, ReadOnlyDirectoryKeepsExistingFile) {
    if (geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions; see FailedWriteKeepsExistingFile";
    const std::string sub = dir_ + "/ro";
    ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
    const std::string path = sub + "/cache.sqkv";
    const Bytes old(5000, 0x17);
    ASSERT_TRUE(WriteFile(path, old));
    ASSERT_EQ(chmod(sub.c_str(), 0500), 0);
    WriterPtr w = ReadyWriter(cache_);
    EXPECT_EQ(sqkv_writer_save(w.get(), path.c_str()), SQKV_ERR_IO);
    chmod(sub.c_str(), 0700);
    Bytes got;
    ASSERT_TRUE(ReadFile(path, &got));
    EXPECT_EQ(got, old);
    EXPECT_EQ(ListDir(sub), std::vector<std::string>{"cache.sqkv"});
}

// A write that fails half-way (file size limit: EFBIG, as on a full disk) must leave the old file
// byte-identical and no temporary file behind. Runs in a child so the limit cannot touch the test log.
TEST_F(Save, FailedWriteKeepsExistingFile) {
    const std::string path = dir_ + "/cache.sqkv";
    const Bytes old(5000, 0x17);
    ASSERT_TRUE(WriteFile(path, old));
    ASSERT_GT(expected_.size(), 8192u);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {4096, 4096};
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
        WriterPtr w = ReadyWriter(cache_);
        const sqkv_error err = sqkv_writer_save(w.get(), path.c_str());
        _exit(err == SQKV_ERR_IO ? 0 : 20 + static_cast<int>(err));
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child crashed";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "save returned " << WEXITSTATUS(status) - 20 << " instead of SQKV_ERR_IO";
    Bytes got;
    ASSERT_TRUE(ReadFile(path, &got));
    EXPECT_EQ(got, old) << "existing file changed by a failed save";
    EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"cache.sqkv"}) << "temporary file left behind";
}

TEST_F(Save, PathThatIsADirectoryFailsCleanly) {
    const std::string target = dir_ + "/target";
    ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
    ASSERT_TRUE(WriteFile(target + "/inside", Bytes(3, 1)));
    WriterPtr w = ReadyWriter(cache_);
    EXPECT_EQ(sqkv_writer_save(w.get(), target.c_str()), SQKV_ERR_IO);
    EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"target"}) << "temporary file left behind";
    EXPECT_EQ(ListDir(target), std::vector<std::string>{"inside"});
}

TEST(OpenFile, MissingFileIsIo) {
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    ReaderPtr r(raw);
    EXPECT_EQ(sqkv_reader_open_file(r.get(), "/nonexistent/dir/x.sqkv"), SQKV_ERR_IO);
}

TEST(OpenFile, EmptyFileIsTruncated) {
    const std::string dir = MakeTempDir("open_empty");
    ASSERT_TRUE(WriteFile(dir + "/empty.sqkv", Bytes()));
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    ReaderPtr r(raw);
    EXPECT_EQ(sqkv_reader_open_file(r.get(), (dir + "/empty.sqkv").c_str()), SQKV_ERR_TRUNCATED);
    RemoveTree(dir);
}

}  // namespace
