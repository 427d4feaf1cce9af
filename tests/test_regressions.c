/* test_regressions.c: one case per bug the fuzzers (fuzz/, docs/robustness.md) found in a parser.
 * Each case replays the input that broke the parser, cut down to what matters, and checks the
 * status and the message the user now gets, plus the nearest input that must still be accepted.
 * What it is not: the parsers' own tests (tests/test_<module>.c), which cover the formats. */
#include "check.h"
#include "toydata.h"
#include <float.h>

static const char *tmp_file(const char *dir, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* fuzz_csv: "3,3.33e80" is a finite double, so the reader took it, but as a float point it became
 * +inf and every loss of a run on that file would have been NaN. */
static void csv_value_beyond_float(const char *dir) {
    const char *path = tmp_file(dir, "points.csv");
    const char bad[] = "x,y\n1,2\n3,3.33e80\n";
    CHECK(check_write_bytes(path, bad, strlen(bad)));
    float *pts = NULL;
    int n = -1;
    EXPECT_STATUS(df_csv_read_points(path, &pts, &n), DF_ERR_FORMAT, "points.csv:3:", "out-of-range");
    CHECK(pts == NULL && n == 0, "a refused file returns no points");
    const char edge[] = "1,-3.4028234e38\n"; /* just below FLT_MAX in magnitude: still a float */
    CHECK(check_write_bytes(path, edge, strlen(edge)));
    EXPECT_STATUS(df_csv_read_points(path, &pts, &n), DF_OK, NULL, NULL);
    CHECK(n == 1 && pts && pts[0] == 1.0f && pts[1] == -FLT_MAX, "n %d", n);
    free(pts);
    unlink(path);
}

int main(void) {
    const char *dir = check_tmpdir("regressions");
    csv_value_beyond_float(dir);
    check_tmpdir_remove(dir, 1);
    return check_exit_code("test_regressions");
}
