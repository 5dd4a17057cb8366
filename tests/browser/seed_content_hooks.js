// The seed's useContentEvents and useContentWebSocket (shared/seeds/000, "3.4 Frontend
// Integration Strategy"), unchanged apart from React: useEffect, useRef and
// useQueryClient are the small stand-ins below, and "ws://your-domain" is this page's host.

const queryKeys = { contents: { byChannel: (channelId) => ['contents', 'channel', channelId] } };

function createQueryClient(fetchList) {
  const data = new Map();
  return {
    data,
    getQueryData: (key) => data.get(JSON.stringify(key)),
    setQueryData: (key, updater) => {
      const k = JSON.stringify(key);
      data.set(k, typeof updater === 'function' ? updater(data.get(k)) : updater);
    },
    invalidateQueries: async ({ queryKey }) => {
      data.set(JSON.stringify(queryKey), await fetchList(queryKey[2]));
    },
  };
}

let currentQueryClient = null;
const useQueryClient = () => currentQueryClient;
const useRef = (initial) => ({ current: initial });
const useEffect = (effect) => { effect(); };
let currentUserId = null;
const getCurrentUserId = () => currentUserId;

// hooks/useContentEvents.ts
const useContentEvents = (channelId) => {
  const queryClient = useQueryClient();
  const eventSourceRef = useRef(null);

  useEffect(() => {
    if (!channelId) return;

    // SSE 연결
    const eventSource = new EventSource(`/api/contents/${channelId}/events`);
    eventSourceRef.current = eventSource;

    eventSource.onmessage = (event) => {
      const data = JSON.parse(event.data);

      // React Query 캐시 업데이트
      queryClient.setQueryData(queryKeys.contents.byChannel(channelId), (oldData) => {
        if (!oldData) return oldData;

        return {
          ...oldData,
          contents: oldData.contents.map((content) =>
            content.id === data.content_id ? { ...content, ...data } : content,
          ),
        };
      });
    };

    eventSource.onerror = (error) => {
      console.error('SSE Error:', error);
      // 재연결 로직
      setTimeout(() => {
        if (eventSourceRef.current) {
          eventSourceRef.current.close();
          // 재연결 시도
        }
      }, 5000);
    };

    return () => {
      eventSource.close();
    };
  }, [channelId, queryClient]);

  return { eventSource: eventSourceRef.current };
};

// WebSocket 클라이언트 (장기 목표)
const useContentWebSocket = (channelId) => {
  const queryClient = useQueryClient();
  const socketRef = useRef(null);

  useEffect(() => {
    if (!channelId) return;

    const socket = new WebSocket(`ws://${location.host}/api/contents/${channelId}/ws`);
    socketRef.current = socket;

    socket.onopen = () => {
      socket.send(
        JSON.stringify({
          type: 'subscribe',
          channel_id: channelId,
          user_id: getCurrentUserId(),
        }),
      );
    };

    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);

      switch (data.type) {
        case 'content_status_update':
          // 캐시 업데이트 로직
          break;
        case 'processing_complete':
          // 완료 시 전체 리페치
          queryClient.invalidateQueries({
            queryKey: queryKeys.contents.byChannel(channelId),
          });
          break;
      }
    };

    return () => {
      socket.close();
    };
  }, [channelId, queryClient]);

  return { socket: socketRef.current };
};
