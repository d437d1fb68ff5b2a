%% What `ejabberdctl consult_status` and `ejabberdctl consult_owned` print,
%% as pure functions of the connections' status maps (consult_grpc:status/1)
%% and of the shop lists; consult_commands gathers them. Plain text, one
%% block per connection in the configured order, for a person at a shell.
-module(consult_status).

-export([status_text/3, status_text/4, owned_text/1, link_state/1]).
-export_type([conn_status/0, refused/0]).

%% A map of consult_grpc:status/1: #{running := false, name := Name} when the
%% connection's process is not running, else its full status.
-type conn_status() :: #{running := boolean(), name := atom(), atom() => term()}.
-type refused() :: #{unavailable | circuit_open | no_owner => non_neg_integer()}.

-define(LABEL_WIDTH, 15).

%% connected: the HTTP/2 connection is up; connecting: it is not yet, and
%% no attempt failed since the last one was made (the first, or one after a
%% GOAWAY); down: the last attempt failed or the link was lost (the process
%% retries with backoff), or the process is not running.
-spec link_state(conn_status()) -> connected | connecting | down.
link_state(#{running := false}) -> down;
link_state(#{connected := true}) -> connected;
link_state(#{reconnect_attempts := 0}) -> connecting;
link_state(#{}) -> down.

-spec status_text(node() | binary(), [conn_status()], refused()) -> string().
status_text(Node, Conns, Refused) ->
    status_text(Node, Conns, Refused, []).

%% Timing: consult_timing:means/1 of this node's stages.
-spec status_text(node() | binary(), [conn_status()], refused(), [{consult_timing:stage(), non_neg_integer(), float()}]) ->
          string().
status_text(Node, Conns, Refused, Timing) ->
    text([io_lib:format("mod_consult on ~ts: ~ts~n", [to_text(Node), plural(length(Conns), "sidecar connection")]),
          [conn_block(C) || C <- Conns],
          refused_line(Refused),
          timing_lines(Timing)]).

%% Each connection with the shops its sidecar decides now, sorted.
-spec owned_text([{conn_status(), [{binary(), non_neg_integer()}]}]) -> string().
owned_text([]) ->
    "mod_consult has no sidecar connections\n";
owned_text(Conns) ->
    text([owned_block(Status, Shops) || {Status, Shops} <- Conns]).

%%% consult_status

conn_block(S = #{running := false}) ->
    [heading(S), line("link", "down (the connection process is not running)")];
conn_block(S) ->
    [heading(S),
     line("link", link_text(link_state(S), S)),
     line("breaker", breaker_text(S)),
     line("sidecar id", sidecar_id_text(S)),
     line("shops owned", integer_to_list(maps:get(owned, S, 0))),
     line("stanzas", io_lib:format("~b forwarded, ~b verdicts, ~b timed out, ~b failed, ~b waiting now",
                                   [maps:get(K, S, 0) || K <- [forwarded, verdicts, timeouts, failed, pending]])),
     line("notifications", io_lib:format("~b queued, ~b dropped",
                                         [maps:get(K, S, 0) || K <- [notifications_queued, notifications_dropped]]))].

heading(S = #{name := Name}) ->
    case maps:find(sidecar, S) of
        {ok, Addr} -> io_lib:format("~ts (~ts)~n", [Name, Addr]);
        error -> io_lib:format("~ts~n", [Name])
    end.

line(Label, Text) ->
    io_lib:format("  ~-*ts ~ts~n", [?LABEL_WIDTH, Label ++ ":", Text]).

link_text(connected, S) ->
    ["connected", case maps:get(tls, S, false) of true -> " over TLS"; false -> "" end,
     case maps:get(draining, S, 0) of
         0 -> "";
         N -> [", ", plural(N, "old connection"), " still answering"]
     end];
link_text(connecting, _S) ->
    "connecting";
link_text(down, S) ->
    ["down",
     case maps:get(last_error, S, undefined) of
         undefined -> "";
         Reason -> [" (", reason_text(Reason), ")"]
     end,
     %% reconnect_attempts counts the retries scheduled since the link was last up.
     case {maps:get(reconnect_attempts, S, 0), maps:get(reconnect_in, S, undefined)} of
         {0, _} -> "";
         {N, undefined} -> io_lib:format(", retry ~b", [N]);
         {N, Ms} -> io_lib:format(", retry ~b in ~ts", [N, duration_text(Ms)])
     end].

breaker_text(S) ->
    Timeouts = plural(maps:get(consecutive_timeouts, S, 0), "timeout"),
    case maps:get(breaker, S, closed) of
        closed -> ["closed (", Timeouts, " in a row)"];
        open -> ["open: failing fast (", Timeouts, " in a row)"];
        half_open ->
            case maps:get(probe_in_flight, S, false) of
                true -> "half-open: one probe request is testing the sidecar";
                false -> "half-open: the next request tests the sidecar"
            end
    end.

sidecar_id_text(S) ->
    Id = maps:get(sidecar_id, S, <<>>),
    case {Id, link_state(S)} of
        {<<>>, connected} -> "(not told yet: its first watch list has not come)";
        {<<>>, _} -> "(not known: it has not sent a watch list since the shim started)";
        {_, connected} -> Id;
        {_, _} -> [Id, " (when last connected)"]
    end.

%% Stanzas consult_grpc failed without asking any connection.
refused_line(Refused) ->
    ["stanzas that got the failure_policy at once, no sidecar asked\n",
     [line(Label, integer_to_list(maps:get(K, Refused, 0)))
      || {Label, K} <- [{"none connected", unavailable}, {"breaker open", circuit_open}, {"no owner", no_owner}]]].

%% Nothing timed yet: nothing to tell.
timing_lines([]) ->
    [];
timing_lines(Means) ->
    ["mean time per consult stanza on this node, since it started\n",
     [line(stage_label(S), io_lib:format("~.1f us (~b)", [Us, N])) || {S, N, Us} <- Means]].

stage_label(to_xml) -> "to XML";
stage_label(request) -> "request out";
stage_label(round_trip) -> "round trip";
stage_label(verdict) -> "verdict in";
stage_label(apply) -> "applied".

%% The reasons consult_grpc_conn records, in words where they are common.
reason_text(econnrefused) -> "connection refused";
reason_text(timeout) -> "connect timed out";
reason_text(closed) -> "the sidecar closed the connection";
reason_text(keepalive_timeout) -> "no answer to the keepalive PING";
reason_text({main_stream_ended, _, {Code, Message}}) when is_binary(Code), is_binary(Message) ->
    ["the sidecar ended the stream: grpc-status ", Code, case Message of <<>> -> ""; _ -> [", ", Message] end];
reason_text(Reason) ->
    io_lib:format("~0tP", [Reason, 8]).

duration_text(Ms) when Ms < 1000 -> io_lib:format("~b ms", [Ms]);
duration_text(Ms) -> io_lib:format("~.1f s", [Ms / 1000]).

%%% consult_owned

owned_block(S = #{running := false}, _Shops) ->
    [heading(S), "  down (the connection process is not running): owns nothing here\n"];
owned_block(S, Shops) ->
    Id = case maps:get(sidecar_id, S, <<>>) of
             <<>> -> "";
             Id1 -> [", sidecar ", Id1]
         end,
    Summary = case {link_state(S), Shops, maps:get(told, S, true)} of
                  {connected, [], false} -> "has not said yet which shops it owns";
                  {connected, _, _} -> ["owns ", plural(length(Shops), "shop")];
                  {Link, _, _} -> [atom_to_list(Link), ": owns nothing here"]
              end,
    [io_lib:format("~ts (~ts~ts): ~ts~n", [maps:get(name, S), maps:get(sidecar, S, <<"?">>), Id, Summary]),
     [["  ", Shop, epoch_text(Epoch), "\n"] || {Shop, Epoch} <- Shops]].

%% Epoch 0: a store without leases, nothing to tell.
epoch_text(0) -> "";
epoch_text(Epoch) -> io_lib:format("  (lease epoch ~b)", [Epoch]).

%%% Text

plural(1, Noun) -> ["1 ", Noun];
plural(N, Noun) -> [integer_to_list(N), " ", Noun, "s"].

to_text(Atom) when is_atom(Atom) -> atom_to_list(Atom);
to_text(Bin) when is_binary(Bin) -> Bin.

%% ejabberdctl prints a string result as it is; a flat character list, so
%% that shop names outside ASCII come out as UTF-8.
text(Chars) -> unicode:characters_to_list(Chars).
