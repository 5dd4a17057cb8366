// The seed's AIJobMonitor and VideoMetadataUpdater (shared/seeds/001, "프론트엔드 통합 예시"),
// unchanged apart from their TypeScript types.

class AIJobMonitor {
  jobIds = new Set();
  pollingInterval = null;

  addJob(jobId) {
    this.jobIds.add(jobId);
    if (!this.pollingInterval) {
      this.startPolling();
    }
  }

  removeJob(jobId) {
    this.jobIds.delete(jobId);
    if (this.jobIds.size === 0) {
      this.stopPolling();
    }
  }

  startPolling() {
    this.pollingInterval = setInterval(async () => {
      if (this.jobIds.size === 0) return;

      const response = await fetch('/v1/ai/jobs/batch-status', {
        method: 'POST',
        headers: {
          'Authorization': `Bearer ${token}`,
          'Content-Type': 'application/json'
        },
        body: JSON.stringify({
          job_ids: Array.from(this.jobIds)
        })
      });

      const { jobs } = await response.json();

      for (const [jobId, status] of Object.entries(jobs)) {
        if (status.status === 'completed' || status.status === 'failed') {
          this.removeJob(jobId);
          this.onJobComplete(jobId, status);
        } else {
          this.onJobProgress(jobId, status);
        }
      }
    }, 2000); // 2초마다 폴링
  }

  stopPolling() {
    if (this.pollingInterval) {
      clearInterval(this.pollingInterval);
      this.pollingInterval = null;
    }
  }

  onJobProgress(jobId, status) {
    // UI 업데이트: 진행률 표시
    console.log(`Job ${jobId}: ${status.progress}%`);
  }

  onJobComplete(jobId, status) {
    // UI 업데이트: 완료/실패 처리
    if (status.status === 'completed') {
      console.log(`Job ${jobId} completed: ${status.result_url}`);
    } else {
      console.error(`Job ${jobId} failed: ${status.error}`);
    }
  }
}

class VideoMetadataUpdater {
  videoIds = new Set();
  updateInterval = null;

  trackVideos(videos) {
    videos.forEach(v => this.videoIds.add(v.id));
    if (!this.updateInterval) {
      this.startUpdating();
    }
  }

  startUpdating() {
    this.updateInterval = setInterval(async () => {
      if (this.videoIds.size === 0) return;

      const response = await fetch('/v1/videos/batch-metadata', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          video_ids: Array.from(this.videoIds)
        })
      });

      const { videos } = await response.json();

      // UI 업데이트
      for (const [videoId, metadata] of Object.entries(videos)) {
        this.updateVideoUI(videoId, metadata);
      }
    }, 5000); // 5초마다 업데이트
  }

  updateVideoUI(videoId, metadata) {
    // DOM 업데이트
    document.querySelector(`[data-video-id="${videoId}"] .view-count`)
      .textContent = metadata.view_count;
    document.querySelector(`[data-video-id="${videoId}"] .like-count`)
      .textContent = metadata.like_count;
  }

  stopTracking() {
    if (this.updateInterval) {
      clearInterval(this.updateInterval);
      this.updateInterval = null;
    }
    this.videoIds.clear();
  }
}
