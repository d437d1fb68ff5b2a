%% gRPC calls over one HTTP/2 connection to a sidecar, for the connection
%% process (consult_grpc_conn), in which all of it runs: the long-lived
%% main FilterStream call and the unary Filter calls, each on its stream.
%%
%% It drives the pure consult_h2_machine: parses what the socket brought,
%% feeds the frames to the machine, writes what the machine says to send and
%% turns the machine's events into gRPC: the main stream's messages go to
%% the caller's callback, unary callers get their reply. What ends the main
%% stream ends the connection ({down, Reason, ...}).
%%
%% A failed send is reported to the process as {send_failed, Sock, Reason},
%% so that failures are handled in one place, outside whatever was sending.
-module(consult_grpc_http2).

-export([open/3, input/4, send/3, queued/2, unary/4, unary_timeout/3, ping/3, ping_timer/1,
         retire/2, close/1, down/1, owes/1, info/1, ref/1, sock/1, role/1, since/1]).
-export_type([conn/0, on_message/1]).

-include("logger.hrl").

-define(STREAM_PATH, <<"/consult.v1.StanzaFilter/FilterStream">>).
-define(UNARY_PATH, <<"/consult.v1.StanzaFilter/Filter">>).
-define(MAX_GRPC_MESSAGE, 16#4000000).

%% A gRPC call on one stream.
-record(call, {
    kind :: main | {unary, gen_server:from(), reference()},
    in = <<>> :: binary(),         %% partial gRPC message
    messages = [] :: [binary()]    %% unary: response messages, newest first
}).

-record(conn, {
    ref :: reference(),            %% identifies the connection and its main stream
    sock :: consult_transport:socket(),
    authority :: binary(),
    request_headers :: [{binary(), binary()}],  %% of every call but :path
    role = current :: current | draining,  %% draining: after the sidecar's GOAWAY
    since :: integer(),            %% monotonic ms when connected
    buf = <<>> :: binary(),
    h2 :: consult_h2_machine:machine(),
    main :: pos_integer(),
    calls = #{} :: #{pos_integer() => #call{}},
    ping = undefined :: undefined | {binary(), reference()}  %% outstanding PING, its timer
}).
-opaque conn() :: #conn{}.

%% Called with each message of the main stream, the connection's role and
%% ref, in order, within input/4.
-type on_message(Acc) :: fun((binary(), current | draining, reference(), Acc) -> Acc).

%% HTTP/2 on a connected socket, and the main stream with its first message.
-spec open(consult_transport:socket(),
           #{scheme := binary(), authority := binary(), auth_headers := [{binary(), binary()}],
             max_stream_id := pos_integer()},
           iodata()) -> conn().
open(Sock, Opts = #{authority := Authority}, Hello) ->
    {ok, Preface, M} = consult_h2_machine:new(#{max_stream_id => maps:get(max_stream_id, Opts)}),
    Headers = [{<<":method">>, <<"POST">>}, {<<":scheme">>, maps:get(scheme, Opts)},
               {<<":authority">>, Authority},
               {<<"content-type">>, <<"application/grpc">>}, {<<"te">>, <<"trailers">>}
               | maps:get(auth_headers, Opts)],
    C0 = #conn{ref = make_ref(), sock = Sock, authority = Authority, request_headers = Headers,
               since = erlang:monotonic_time(millisecond), h2 = M, main = 1},
    write(Preface, C0),
    {ok, Main, C1} = open_stream(?STREAM_PATH, [], C0),
    C2 = C1#conn{main = Main, calls = #{Main => #call{kind = main}}},
    send_message(Main, Hello, undefined, nofin, C2).

-spec ref(conn()) -> reference().
ref(#conn{ref = Ref}) -> Ref.

-spec sock(conn()) -> consult_transport:socket().
sock(#conn{sock = Sock}) -> Sock.

-spec role(conn()) -> current | draining.
role(#conn{role = Role}) -> Role.

-spec since(conn()) -> integer().
since(#conn{since = Since}) -> Since.

%%% Calls

%% A message on the main stream. Tag: counted by queued/2 while it waits for
%% the sidecar's flow-control windows (undefined: not counted).
-spec send(iodata(), term(), conn()) -> conn().
send(Msg, Tag, C = #conn{main = Main}) ->
    send_message(Main, Msg, Tag, nofin, C).

-spec queued(term(), conn()) -> non_neg_integer().
queued(Tag, #conn{main = Main, h2 = M}) ->
    consult_h2_machine:queued(Main, Tag, M).

%% A unary Filter call with this request; its caller gets the reply (and
%% the process {timeout, TRef, {unary_timeout, Ref, StreamId}} after Timeout,
%% for unary_timeout/3).
-spec unary(iodata(), gen_server:from(), pos_integer(), conn()) ->
          {ok, conn()} | {error, stream_ids_exhausted | too_many_streams | goaway}.
unary(Request, From, Timeout, C = #conn{ref = Ref}) ->
    GrpcTimeout = {<<"grpc-timeout">>, iolist_to_binary([integer_to_list(Timeout), $m])},
    case open_stream(?UNARY_PATH, [GrpcTimeout], C) of
        {ok, Id, C1} ->
            TRef = erlang:start_timer(Timeout, self(), {unary_timeout, Ref, Id}),
            Calls = (C1#conn.calls)#{Id => #call{kind = {unary, From, TRef}}},
            {ok, send_message(Id, Request, undefined, fin, C1#conn{calls = Calls})};
        Error ->
            Error
    end.

%% The caller gets {error, timeout}, the sidecar a RST_STREAM.
-spec unary_timeout(pos_integer(), reference(), conn()) -> {ok, conn()} | ignore.
unary_timeout(Id, TRef, C = #conn{calls = Calls}) ->
    case Calls of
        #{Id := #call{kind = {unary, _, TRef}}} ->
            {ok, C1} = finish(Id, timeout, reset(Id, cancel, C)),
            {ok, C1};
        _ ->
            ignore
    end.

%% Whether unary calls still wait for their answer.
-spec owes(conn()) -> boolean().
owes(#conn{calls = Calls}) ->
    lists:any(fun(#call{kind = K}) -> K =/= main end, maps:values(Calls)).

%%% The connection

%% A PING and its timer, {timeout, TRef, {ping_timeout, Ref}} after Timeout
%% unless the ACK comes first.
-spec ping(<<_:64>>, pos_integer(), conn()) -> conn().
ping(Opaque, Timeout, C = #conn{ref = Ref}) ->
    C1 = h2(fun(M) -> consult_h2_machine:ping(Opaque, M) end, C),
    TRef = erlang:start_timer(Timeout, self(), {ping_timeout, Ref}),
    C1#conn{ping = {Opaque, TRef}}.

-spec ping_timer(conn()) -> reference() | undefined.
ping_timer(#conn{ping = {_, TRef}}) -> TRef;
ping_timer(#conn{}) -> undefined.

%% No new calls go here: our GOAWAY (Code: no_error when we just want a new
%% connection), and it drains what it owes.
-spec retire(consult_h2:error_code(), conn()) -> conn().
retire(Code, C) ->
    C1 = h2(fun(M) -> consult_h2_machine:goaway(Code, M) end, C),
    cancel_ping(C1),
    C1#conn{role = draining, ping = undefined}.

%% Goes away politely: GOAWAY (no streams of the sidecar's to accept), closed.
-spec close(conn()) -> ok.
close(C) ->
    h2(fun(M) -> consult_h2_machine:goaway(no_error, M) end, C),
    consult_transport:close(C#conn.sock).

%% The connection ended: closed, its unary callers answered unavailable.
%% Returns how many they were.
-spec down(conn()) -> non_neg_integer().
down(C = #conn{sock = Sock, calls = Calls}) ->
    consult_transport:close(Sock),
    cancel_ping(C),
    Unary = [Call || Call = #call{kind = {unary, _, _}} <- maps:values(Calls)],
    [begin erlang:cancel_timer(TRef), gen_server:reply(From, unary_reply(unavailable, Call)) end
     || Call = #call{kind = {unary, From, TRef}} <- Unary],
    length(Unary).

-spec info(conn()) -> #{streams := non_neg_integer(), next_stream_id := pos_integer(),
                        peer_settings := map(), notifications_queued := non_neg_integer()}.
info(C = #conn{h2 = M}) ->
    (maps:with([streams, next_stream_id, peer_settings], consult_h2_machine:info(M)))#{
      notifications_queued => queued(notify, C)}.

cancel_ping(#conn{ping = {_, TRef}}) -> erlang:cancel_timer(TRef), ok;
cancel_ping(_) -> ok.

%%% Input

%% What the socket brought. Frames are handled one by one; each sees the
%% state the previous ones left. A protocol error ends the connection
%% (after a GOAWAY with its code), and so does any bug triggered by network
%% input, OnMessage's included, instead of a crash.
-spec input(binary(), conn(), on_message(Acc), Acc) -> {ok, conn(), Acc} | {down, term(), conn(), Acc}.
input(Data, C = #conn{buf = Buf}, OnMessage, Acc) ->
    case frames(C#conn{buf = <<Buf/binary, Data/binary>>}, {OnMessage, Acc}) of
        {ok, C1, {_, Acc1}} ->
            consult_transport:activate(C1#conn.sock),
            {ok, C1, Acc1};
        {down, Reason, C1, {_, Acc1}} ->
            {down, Reason, C1, Acc1};
        {error, Code, Reason, C1, {_, Acc1}} ->
            h2(fun(M) -> consult_h2_machine:goaway(Code, M) end, C1),
            {down, {protocol_error, Code, Reason}, C1, Acc1}
    end.

frames(C = #conn{buf = Buf, h2 = M}, Up) ->
    case consult_h2:parse(Buf, consult_h2_machine:max_frame_size(M)) of
        more ->
            {ok, C, Up};
        {error, {connection_error, Code, Reason}} ->
            {error, Code, Reason, C, Up};
        {ok, Frame, Rest} ->
            try frame(Frame, C#conn{buf = Rest}, Up) of
                {ok, C1, Up1} -> frames(C1, Up1);
                Stop -> Stop
            catch
                Class:Reason:Stack ->
                    ?WARNING_MSG("consult_grpc: error on sidecar input: ~p:~p ~p",
                                 [Class, Reason, Stack]),
                    {error, internal_error, {internal, Reason}, C, Up}
            end
    end.

frame(Frame, C = #conn{h2 = M}, Up) ->
    case consult_h2_machine:frame(Frame, M) of
        {ok, Events, Send, M1} ->
            write(Send, C),
            events(Events, C#conn{h2 = M1}, Up);
        {error, {connection_error, Code, Reason}, _} ->
            {error, Code, Reason, C, Up}
    end.

events([], C, Up) ->
    {ok, C, Up};
events([Event | Events], C, Up) ->
    case event(Event, C, Up) of
        {ok, C1, Up1} -> events(Events, C1, Up1);
        Stop -> Stop
    end.

event({data, Id, IsFin, Data}, C = #conn{calls = Calls}, Up) ->
    case Calls of
        #{Id := Call = #call{in = In}} ->
            case grpc_messages(<<In/binary, Data/binary>>, []) of
                {ok, Msgs, Rest} -> call_data(Id, Call#call{in = Rest}, Msgs, IsFin, C, Up);
                {error, Reason} -> {error, internal_error, Reason, C, Up}
            end;
        _ ->
            {ok, C, Up}
    end;
event({headers, Id, IsFin, Headers}, C, Up) ->
    %% Trailers-only, or a failure status: the call is over.
    case {status(Headers), IsFin} of
        {<<"200">>, nofin} -> {ok, C, Up};
        {Status, fin} -> ended(finish(Id, {ended, Status, Headers}, C), Up);
        {Status, nofin} -> ended(finish(Id, {ended, Status, Headers}, reset(Id, cancel, C)), Up)
    end;
event({trailers, Id, Trailers}, C, Up) ->
    ended(finish(Id, {ended, status(Trailers), Trailers}, C), Up);
event({rst_stream, Id, Code}, C, Up) ->
    ended(finish(Id, {rst_stream, Code}, C), Up);
event({stream_error, Id, Code, Reason}, C, Up) ->
    ended(finish(Id, {stream_error, Code, Reason}, C), Up);
event({goaway, _LastId, Code, Debug, Refused}, C, Up) ->
    %% What the sidecar took it still answers; what it did not fails now
    %% (the main stream among it: the connection is of no more use).
    case ended(finish_all(Refused, {goaway, Code, Debug}, C), Up) of
        {ok, C1 = #conn{role = current}, Up1} ->
            Log = case Code of
                      no_error -> info;
                      _ -> warning
                  end,
            logger:log(Log, "consult_grpc: the sidecar at ~ts is going away (GOAWAY ~p~ts); what it owes "
                            "comes on this connection, new requests go to a new one",
                       [C#conn.authority, Code, debug_text(Debug)]),
            cancel_ping(C1),
            {ok, C1#conn{role = draining, ping = undefined}, Up1};
        Other ->
            Other
    end;
event({ping_ack, Opaque}, C = #conn{ping = {Opaque, TRef}}, Up) ->
    erlang:cancel_timer(TRef),
    {ok, C#conn{ping = undefined}, Up};
event({ping_ack, _}, C, Up) ->
    {ok, C, Up}.  %% a PING ACK we no longer wait for

status(Headers) -> proplists:get_value(<<":status">>, Headers, <<"200">>).

debug_text(<<>>) -> "";
debug_text(Debug) -> io_lib:format(", ~p", [Debug]).

call_data(Id, Call = #call{kind = main}, Msgs, IsFin, C = #conn{calls = Calls, role = Role, ref = Ref},
          {OnMessage, Acc}) ->
    Acc1 = lists:foldl(fun(Msg, A) -> OnMessage(Msg, Role, Ref, A) end, Acc, Msgs),
    data_end(Id, IsFin, C#conn{calls = Calls#{Id := Call}}, {OnMessage, Acc1});
call_data(Id, Call = #call{messages = Old}, Msgs, IsFin, C = #conn{calls = Calls}, Up) ->
    Call1 = Call#call{messages = lists:reverse(Msgs, Old)},
    data_end(Id, IsFin, C#conn{calls = Calls#{Id := Call1}}, Up).

data_end(_Id, nofin, C, Up) -> {ok, C, Up};
data_end(Id, fin, C, Up) -> ended(finish(Id, no_trailers, C), Up).

ended({ok, C}, Up) -> {ok, C, Up};
ended({down, Reason, C}, Up) -> {down, Reason, C, Up}.

finish_all([], _Outcome, C) ->
    {ok, C};
finish_all([Id | Ids], Outcome, C) ->
    case finish(Id, Outcome, C) of
        {ok, C1} -> finish_all(Ids, Outcome, C1);
        Down -> Down
    end.

%%% Replies

%% A call's stream is over, for one of these outcomes:
%%   {ended, Status, Headers}   its final header block, or one with a :status
%%                              other than 200;
%%   no_trailers                the sidecar ended it with its data;
%%   {rst_stream, Code}         the sidecar reset it;
%%   {stream_error, Code, Why}  we reset it for a protocol error;
%%   {goaway, Code, Debug}      the sidecar is going away without it;
%%   timeout                    its caller's time is up (we reset it).
%% The main stream's end is the connection's; a unary caller gets its reply.
finish(Id, Outcome, C = #conn{calls = Calls}) ->
    case maps:take(Id, Calls) of
        {#call{kind = main}, _} ->
            {down, down_reason(Outcome), C};
        {Call = #call{kind = {unary, From, TRef}}, Calls1} ->
            erlang:cancel_timer(TRef),
            gen_server:reply(From, unary_reply(Outcome, Call)),
            {ok, C#conn{calls = Calls1}};
        error ->
            {ok, C}
    end.

down_reason({ended, Status, Headers}) -> {main_stream_ended, Status, grpc_status(Headers)};
down_reason(no_trailers) -> main_stream_ended;
down_reason(Reason) -> Reason.

%% Also unavailable: the connection went.
unary_reply({ended, _Status, Trailers}, #call{messages = Msgs}) ->
    case {grpc_status(Trailers), Msgs} of
        {{<<"0">>, _}, [Msg]} ->
            try {ok, consult_pb:decode_verdict(Msg)}
            catch error:{consult_pb, Why} -> {error, {bad_response, Why}}
            end;
        {{<<"0">>, _}, _} -> {error, {bad_response, length(Msgs)}};
        {{Code, Message}, _} -> {error, {grpc, Code, Message}}
    end;
unary_reply(no_trailers, Call) -> unary_reply({ended, <<"200">>, []}, Call);
unary_reply({rst_stream, Code}, _Call) -> {error, {rst_stream, Code}};
unary_reply({stream_error, Code, _Why}, _Call) -> {error, {stream_error, Code}};
unary_reply(timeout, _Call) -> {error, timeout};
unary_reply({goaway, _, _}, _Call) -> {error, unavailable};
unary_reply(unavailable, _Call) -> {error, unavailable}.

%%% gRPC messages (length-prefixed, never compressed: we offer no grpc-accept-encoding)

grpc_messages(<<0, Len:32, Msg:Len/binary, Rest/binary>>, Acc) ->
    grpc_messages(Rest, [Msg | Acc]);
grpc_messages(<<Compressed, _/binary>>, _Acc) when Compressed =/= 0 ->
    {error, compressed_message};
grpc_messages(<<_, Len:32, _/binary>>, _Acc) when Len > ?MAX_GRPC_MESSAGE ->
    {error, {message_too_large, Len}};
grpc_messages(Rest, Acc) ->
    {ok, lists:reverse(Acc), Rest}.

grpc_status(Headers) ->
    Code = proplists:get_value(<<"grpc-status">>, Headers, <<"unknown">>),
    {Code, percent_decode(proplists:get_value(<<"grpc-message">>, Headers, <<>>))}.

%% grpc-message is percent-encoded UTF-8.
percent_decode(<<$%, H, L, Rest/binary>>) ->
    case catch binary_to_integer(<<H, L>>, 16) of
        Byte when is_integer(Byte) -> <<Byte, (percent_decode(Rest))/binary>>;
        _ -> <<$%, (percent_decode(<<H, L, Rest/binary>>))/binary>>
    end;
percent_decode(<<Char, Rest/binary>>) ->
    <<Char, (percent_decode(Rest))/binary>>;
percent_decode(<<>>) ->
    <<>>.

%%% Sending

%% Runs a machine function that only has something to send, and sends it.
h2(Fun, C = #conn{h2 = M}) ->
    {ok, Send, M1} = Fun(M),
    write(Send, C),
    C#conn{h2 = M1}.

write(Data, #conn{sock = Sock}) ->
    case iolist_size(Data) =:= 0 orelse consult_transport:send(Sock, Data) of
        true -> ok;
        ok -> ok;
        {error, Reason} -> self() ! {send_failed, Sock, Reason}, ok
    end.

reset(Id, Code, C) ->
    h2(fun(M) -> consult_h2_machine:reset_stream(Id, Code, M) end, C).

open_stream(Path, ExtraHeaders, C = #conn{h2 = M, request_headers = [Method, Scheme | Rest]}) ->
    Headers = [Method, Scheme, {<<":path">>, Path} | Rest ++ ExtraHeaders],
    case consult_h2_machine:open_stream(Headers, M) of
        {ok, Id, Send, M1} ->
            write(Send, C),
            {ok, Id, C#conn{h2 = M1}};
        Error ->
            Error
    end.

%% One length-prefixed gRPC message on a stream.
send_message(Id, Msg, Tag, IsFin, C) ->
    Framed = [0, <<(iolist_size(Msg)):32>>, Msg],
    h2(fun(M) -> consult_h2_machine:send(Id, Framed, IsFin, Tag, M) end, C).
