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
#include <libavutil/opt.h>
#include <time.h>
// Video reading/writing helpers (VideoReader, VideoWriter).
static inline int cff_averror_exit(void) { return AVERROR_EXIT; }
static inline int cff_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
static inline int cff_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
static inline int cff_disposition_attached_pic(void) { return AV_DISPOSITION_ATTACHED_PIC; }
static inline int cff_codec_flag_global_header(void) { return AV_CODEC_FLAG_GLOBAL_HEADER; }
static inline int64_t cff_monotonic_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
// Interrupt callback: *opaque is a deadline in cff_monotonic_us() microseconds (0 = none).
static inline int cff_deadline_interrupt(void *opaque) {
    int64_t deadline = *(volatile int64_t *)opaque;
    return deadline > 0 && cff_monotonic_us() > deadline;
}
static inline void cff_install_deadline(AVFormatContext *ctx, int64_t *deadline) {
    ctx->interrupt_callback.callback = cff_deadline_interrupt;
    ctx->interrupt_callback.opaque = deadline;
}
#endif
