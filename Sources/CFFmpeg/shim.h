#ifndef CFFMPEG_SHIM_H
#define CFFMPEG_SHIM_H
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <errno.h>
// Function-like and cast macros Swift cannot import, as inline functions.
static inline int cff_averror(int posix_errno) { return AVERROR(posix_errno); }
static inline int cff_averror_eagain(void) { return AVERROR(EAGAIN); }
static inline int cff_averror_eof(void) { return AVERROR_EOF; }
static inline int64_t cff_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline const char *cff_err2str(int errnum, char *buf, size_t size) { av_strerror(errnum, buf, size); return buf; }
#endif
