#include "cppnet/credentials.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace cppnet {
namespace {

TEST(Credentials, PasswordFileFirstLine) {
  char path[] = "/tmp/cppnet-pw-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "s3cret\r\nsecond line\n", 20), 20);
  close(fd);
  std::string pw;
  ASSERT_TRUE(ReadSecretFile("--etcd-password-file", path, &pw).ok());
  EXPECT_EQ(pw, "s3cret");
  FILE* f = fopen(path, "w");
  fclose(f);
  EXPECT_EQ(ReadSecretFile("--etcd-password-file", path, &pw).message(),
            std::string("--etcd-password-file ") + path + ": empty");
  unlink(path);
  EXPECT_EQ(ReadSecretFile("--etcd-password-file", path, &pw).message(),
            std::string("--etcd-password-file ") + path + ": No such file or directory");
}

TEST(Credentials, CommandLinePasswordIsScrubbed) {
  char a0[] = "cppnet-agent", a1[] = "--etcd-password", a2[] = "hunter2",
       a3[] = "--etcd-password=pw", a4[] = "--iface=eth0";
  char* argv[] = {a0, a1, a2, a3, a4};
  std::string warning = ScrubPasswordArg(5, argv);
  EXPECT_NE(warning.find("readable by every user"), std::string::npos);
  EXPECT_STREQ(argv[2], "xxxxxxx");
  EXPECT_STREQ(argv[3], "--etcd-password=xx");
  EXPECT_STREQ(argv[4], "--iface=eth0");
  char b1[] = "--etcd-password-file=/etc/cppnet/pw";
  char* argv2[] = {a0, b1};
  EXPECT_EQ(ScrubPasswordArg(2, argv2), "");
  EXPECT_STREQ(argv2[1], "--etcd-password-file=/etc/cppnet/pw");
}

}  // namespace
}  // namespace cppnet
